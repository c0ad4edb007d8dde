"""MMDetection adapters: FPN necks whose top-down path takes any upsampler."""
