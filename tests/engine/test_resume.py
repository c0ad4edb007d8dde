"""Resume with torch >= 2.6 (weights_only=True) after allow-listing mmengine's checkpoint globals."""
import pickle

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmdynup  # noqa: F401  (allow-lists mmengine's checkpoint globals)


class _TinyRegression(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, inputs, targets=None, mode='loss'):
        prediction = self.linear(inputs).squeeze(1)
        if mode == 'loss':
            return {'loss': (prediction - targets).pow(2).mean()}
        return prediction


class _Points(Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(16, 3, generator=generator)
        self.targets = self.inputs @ torch.tensor([1.0, -2.0, 0.5])

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], targets=self.targets[index])


class _Interrupted(RuntimeError):
    pass


class _InterruptAfter(Hook):
    """Simulates a job killed right after the checkpoint of iteration ``iters`` was written."""

    priority = 'LOWEST'

    def __init__(self, iters):
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iters:
            raise _Interrupted(f'stopped after iteration {self.iters}')


def _runner(work_dir, max_iters, resume=False, load_from=None, interrupt_after=None):
    torch.manual_seed(0)
    hooks = [_InterruptAfter(interrupt_after)] if interrupt_after else None
    return Runner(custom_hooks=hooks,
        model=_TinyRegression(), work_dir=str(work_dir), experiment_name=f'run{max_iters}{resume}{interrupt_after}',
        train_dataloader=dict(dataset=_Points(), batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3], by_epoch=False),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0), resume=resume, load_from=load_from)


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = _runner(tmp_path / 'straight', 4)
    straight.train()
    first = _runner(tmp_path / 'split', 4, interrupt_after=2)
    with pytest.raises(_Interrupted):
        first.train()
    checkpoint = tmp_path / 'split' / 'iter_2.pth'
    assert checkpoint.is_file()
    second = _runner(tmp_path / 'split', 4, resume=True, load_from=str(checkpoint))
    second.train()
    assert second.iter == 4
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], value)


def test_checkpoint_loads_with_weights_only(tmp_path):
    runner = _runner(tmp_path, 2)
    runner.train()
    state = torch.load(tmp_path / 'iter_2.pth', weights_only=True)
    assert state['meta']['iter'] == 2 and 'message_hub' in state


class _Payload:
    def __reduce__(self):
        return (print, ('this must never run',))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
