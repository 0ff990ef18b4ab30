"""A network of the researcher's own kind: a small 1-D convolutional classifier for signals.

losslab calls ``conv1d_net(input_shape, num_outputs, **model.options)`` and gets back a plain
``nn.Module``; nothing else is needed (no curve layers, no registration).
"""
from torch import nn


def conv1d_net(input_shape, num_outputs, channels=16, kernel=5):
    c_in, length = input_shape
    if length < 4:
        raise ValueError(f"signals of length {length} are too short for two pooling steps")
    return nn.Sequential(
        nn.Conv1d(c_in, channels, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(channels, channels, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(channels * (length // 4), num_outputs),
    )
