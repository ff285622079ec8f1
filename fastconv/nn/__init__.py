"""fastconv.nn: layers, loss, optimizers, training and serialization over the fastconv ops.

Parameters are NumPy arrays in PyTorch layouts (`.weight`, `.bias`; grads `.weight_grad`, `.bias_grad`),
so models and weights move between the two (`from_torch`, `to_torch`). ReLU's backward rule is
switchable ('gradient', 'deconvnet', 'guided'; see `backward_rule`) for the visualization methods.
"""
from ._random import manual_seed
from .base import Layer
from .conv import Conv2d, ConvTranspose2d, LocallyConnected2d, TiledConv2d
from .layers import RELU_RULES, Dropout, Flatten, Linear, MaxPool2d, ReLU, backward_rule
from .norm import BatchNorm2d, LocalResponseNorm, Softmax, fold_batch_norm
from .pooling import AdaptiveAvgPool2d, AvgPool2d
from .loss import SoftmaxCrossEntropy
from .optim import SGD, Adam, Optimizer
from .sequential import Sequential
from .serialize import ModelFileError, from_torch, load, save, to_torch
from .train import evaluate, fit, predict
from . import models

__all__ = [
    "manual_seed", "Layer", "Conv2d", "TiledConv2d", "LocallyConnected2d", "ConvTranspose2d", "Linear", "MaxPool2d",
    "ReLU", "BatchNorm2d", "fold_batch_norm", "LocalResponseNorm", "Softmax", "AvgPool2d", "AdaptiveAvgPool2d",
    "Flatten", "Dropout", "RELU_RULES", "backward_rule", "SoftmaxCrossEntropy", "SGD", "Adam", "Optimizer",
    "Sequential", "save", "load", "ModelFileError", "from_torch", "to_torch", "fit", "evaluate", "predict", "models",
]
