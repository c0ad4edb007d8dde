# FADE's gate blends the guide and the upsampled feature channel by channel, so each skip is
# first projected (1x1 ConvModule) to the width of the feature it guides: +2.66M parameters of
# laterals that the other rows do not have (see README.md).
_base_ = ['./_base_/nyu-depth_4xb8-18k.py', './_base_/bts-skip_r50.py',
          '../_base_/upsamplers/fade.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}},
                              lateral_channels=[128, 128, 512, 2048]))
