"""The plain reference: Gatys style transfer written the way the PyTorch neural-style tutorial
writes it (https://pytorch.org/tutorials/advanced/neural_style_tutorial.html), for the benchmarks.

The tutorial's structure is kept on purpose, because that is what is being compared:
  * a copy of VGG's ``features`` rebuilt into one ``nn.Sequential`` with a normalisation module in
    front and ``ContentLoss`` / ``StyleLoss`` modules inserted after the named layers, trimmed
    after the last loss module; every forward pass runs the whole trimmed model;
  * ``torch.optim.LBFGS([input_img])`` with its defaults (20 iterations per ``step()``, history
    100, no line search), the input clamped to [0, 1] inside the closure, one closure call per
    "step";
  * the input is optimised at the target size from the first step (no coarse-to-fine).

What is *not* the tutorial's, so that both implementations minimise the same objective and one
evaluator can judge them: the layers (content conv4_2, style conv1_1…conv5_1, average pooling),
the loss formulas (Gram / (H·W), relative squared errors, total variation relative to the
content's) and the weights are the project's defaults. The tutorial's MSE and 1e6 style weight cost
the same per step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn, optim

from napari_nst.settings import Settings

_DEFAULTS = Settings()  # the project's loss weights: both implementations minimise one objective

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalization(nn.Module):
    def __init__(self):
        super().__init__()
        self.mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean) / self.std


def relative_squared_error(input, target):
    return (input - target).pow(2).sum() / (target.pow(2).sum() + 1e-12)


def gram_matrix(input):
    a, b, c, d = input.size()
    features = input.view(a * b, c * d)
    return torch.mm(features, features.t()) / (c * d)


class ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()
        self.loss = None

    def forward(self, input):
        self.loss = relative_squared_error(input, self.target)
        return input


class StyleLoss(nn.Module):
    def __init__(self, target_feature):
        super().__init__()
        self.target = gram_matrix(target_feature).detach()
        self.loss = None

    def forward(self, input):
        self.loss = relative_squared_error(gram_matrix(input), self.target)
        return input


def total_variation(img):
    return (img[..., 1:, :] - img[..., :-1, :]).pow(2).mean() + (
        img[..., :, 1:] - img[..., :, :-1]
    ).pow(2).mean()


def get_style_model_and_losses(
    cnn,
    style_img,
    content_img,
    content_layers=("conv_4_2",),
    style_layers=("conv_1_1", "conv_2_1", "conv_3_1", "conv_4_1", "conv_5_1"),
):
    cnn = copy.deepcopy(cnn)
    model = nn.Sequential(Normalization())
    # the layers alone, for the targets: the tutorial runs them through ``model`` (loss modules
    # included), which only works when style and content have the same shape
    trunk = nn.Sequential(Normalization())
    content_losses, style_losses = [], []
    block, conv = 1, 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            conv += 1
            name = f"conv_{block}_{conv}"
        elif isinstance(layer, nn.ReLU):
            name = f"relu_{block}_{conv}"
            layer = nn.ReLU(inplace=False)
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            name = f"pool_{block}"
            layer = nn.AvgPool2d(2, 2)
            block, conv = block + 1, 0
        else:
            raise RuntimeError(f"Unrecognized layer: {layer.__class__.__name__}")
        model.add_module(name, layer)
        trunk.add_module(name, layer)

        if name in content_layers:
            target = trunk(content_img).detach()
            content_loss = ContentLoss(target)
            model.add_module(f"content_loss_{block}_{conv}", content_loss)
            content_losses.append(content_loss)
        if name in style_layers:
            target_feature = trunk(style_img).detach()
            style_loss = StyleLoss(target_feature)
            model.add_module(f"style_loss_{block}_{conv}", style_loss)
            style_losses.append(style_loss)

    for i in range(len(model) - 1, -1, -1):
        if isinstance(model[i], (ContentLoss, StyleLoss)):
            break
    model = model[: i + 1]
    return model, style_losses, content_losses


def run_style_transfer(
    cnn,
    content_img,
    style_img,
    input_img,
    num_steps=300,
    content_weight=_DEFAULTS.content_weight,
    style_weight=_DEFAULTS.style_weight,
    tv_weight=_DEFAULTS.tv_weight,
    on_step: Callable[[int, float], None] | None = None,
):
    """Optimise ``input_img`` for ``num_steps`` closure evaluations; ``on_step(step, loss)`` gets the
    loss of the image each evaluation saw. Returns the clamped result."""
    model, style_losses, content_losses = get_style_model_and_losses(cnn, style_img, content_img)
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = optim.LBFGS([input_img])
    tv_scale = 1.0 / (total_variation(content_img).item() + 1e-6)

    run = [0]

    def closure():
        with torch.no_grad():
            input_img.clamp_(0, 1)
        optimizer.zero_grad()
        model(input_img)
        style_score = sum(sl.loss for sl in style_losses) / len(style_losses)
        content_score = sum(cl.loss for cl in content_losses)
        loss = (
            style_weight * style_score
            + content_weight * content_score
            + tv_weight * tv_scale * total_variation(input_img)
        )
        loss.backward()
        run[0] += 1
        if on_step is not None:
            on_step(run[0], loss.item())
        return loss

    while run[0] < num_steps:
        optimizer.param_groups[0]["max_iter"] = min(20, num_steps - run[0])
        optimizer.param_groups[0]["max_eval"] = min(25, num_steps - run[0])
        optimizer.step(closure)

    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img
