"""MIRL end to end on a generated ImageNet-layout set, through the tools and our configs:
``tools/train.py`` pretraining -> checkpoint -> ``tools/convert_checkpoint.py --source mirl`` ->
``tools/train.py`` fine-tuning (RandAugment, erasing, mixup / cutmix, layer decay, EMA) ->
``tools/test.py`` printing top-1 / top-5. The first three run in this process (two runners of
different configs), ``tools/test.py`` in its own, as a user runs it.

The tiny configs inherit the full ImageNet recipes and change only sizes, batch, epochs and the
CPU optimiser wrapper. Losses: the pretraining log must fall; the fine-tuned classifier's
cross-entropy on the clean images must fall below that of its pretrained start (ln 3).
"""
import json
import re
import runpy

import pytest
import torch

pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402

from mmdynup.converters.checkpoint_io import load_checkpoint  # noqa: E402
from mmdynup.datasets import ImageNetLayout, write_synthetic_imagenet  # noqa: E402
from tests.conftest import REPO_ROOT, run_tool_process  # noqa: E402

CONFIGS = REPO_ROOT / 'configs' / 'mirl'
PRETRAIN = CONFIGS / 'mirl_vit-tiny-d6_1xb4-10e_synthetic-in1k-32x32.py'
FINETUNE = CONFIGS / 'mirl_vit-tiny-d6_ft-1xb6-8e_synthetic-in1k-32x32.py'


def run_tool(name, *arguments):
    """``tools/<name>.py``'s ``main`` in this process (single-threaded by the conftest)."""
    return runpy.run_path(str(REPO_ROOT / 'tools' / f'{name}.py'), run_name='tool')['main'](
        [str(argument) for argument in arguments])


def logged_losses(work_dir):
    lines = next(work_dir.glob('*/vis_data/scalars.json')).read_text().splitlines()
    return [json.loads(line)['loss'] for line in lines if '"loss"' in line]


def clean_loss(model, root):
    """Cross-entropy of ``model`` on every image of the set, through the test pipeline."""
    cfg = Config.fromfile(FINETUNE)
    items = []
    for split in ('train', 'val'):
        dataset = ImageNetLayout(data_root=str(root), data_prefix=dict(img_path=split),
                                 pipeline=cfg.test_pipeline)
        items += [dataset[i] for i in range(len(dataset))]
    batch = model.data_preprocessor(dict(inputs=[item['inputs'] for item in items],
                                         data_samples=[item['data_samples'] for item in items]))
    with torch.no_grad():
        return model(**batch, mode='loss')['loss'].item()


def test_pretrain_convert_finetune_test(tmp_path):
    root = tmp_path / 'imagenet'
    write_synthetic_imagenet(root, num_classes=3, train_per_class=4, val_per_class=2, size=40)
    data = [f'train_dataloader.dataset.data_root={root}']

    pretrain_dir = tmp_path / 'pretrain'
    run_tool('train', PRETRAIN, '--work-dir', pretrain_dir, '--cfg-options', *data)
    losses = logged_losses(pretrain_dir)
    assert len(losses) == 30  # 10 epochs of 3 steps
    assert sum(losses[-5:]) < sum(losses[:5]), losses

    backbone = tmp_path / 'mirl_tiny_mmseg.pth'
    run_tool('convert_checkpoint', pretrain_dir / 'epoch_10.pth', backbone, '--source', 'mirl',
             '--option', 'num_layers=6', '--option', 'embed_dims=32')

    finetune_dir = tmp_path / 'finetune'
    data += [f'val_dataloader.dataset.data_root={root}',
             f'test_dataloader.dataset.data_root={root}',
             f'model.backbone.init_cfg.checkpoint={backbone}']
    run_tool('train', FINETUNE, '--work-dir', finetune_dir, '--cfg-options', *data)
    checkpoint = finetune_dir / 'epoch_8.pth'
    printed = run_tool_process('test', FINETUNE, checkpoint, '--work-dir', tmp_path / 'test',
                               '--cfg-options', *data, env={'OMP_NUM_THREADS': '1'})
    top1 = re.search(r'accuracy/top1: ([0-9.]+)', printed)
    top5 = re.search(r'accuracy/top5: ([0-9.]+)', printed)
    assert top1 and top5, printed[-2000:]
    assert 0.0 <= float(top1[1]) <= 100.0 and float(top5[1]) == 100.0  # 3 classes

    cfg = Config.fromfile(FINETUNE)
    cfg.model.backbone.init_cfg.checkpoint = str(backbone)
    model = MODELS.build(cfg.model)
    model.init_weights()  # the pretrained encoder, a fresh near-zero head
    pretrained = load_checkpoint(str(pretrain_dir / 'epoch_10.pth')).state_dict
    torch.testing.assert_close(model.backbone.layers[5].attn.qkv.weight.detach(),
                               pretrained['blocks.5.attn.qkv.weight'])
    before = clean_loss(model.eval(), root)
    model.load_state_dict(load_checkpoint(str(checkpoint)).state_dict)  # the EMA weights
    after = clean_loss(model.eval(), root)
    assert before == pytest.approx(1.0986, abs=2e-3)  # ln 3
    assert after < before - 0.05, (before, after)
