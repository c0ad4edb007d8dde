"""MMSegmentation adapters: decode heads whose upsampling steps take any upsampler."""
