"""fastconv.torch against PyTorch alone, as ratios measured in one run (2 threads each):

  M1  a training step (forward + backward + SGD) of a MobileNet-v1-style net, 64×64 input, batch 32:
      the same model timed unpatched and under fastconv.torch.patch(model, fuse_relu=True), in alternation
      (each BatchNorm2d + ReLU pair fused into one fastconv batch norm);
  L1  a training step of a locally connected net (two LocallyConnected2d + max-pool + Linear) against the
      same net on the unfold + einsum modules of fastconv.nn.to_torch (same weights);
  X1  one call of fastconv.torch.conv2d on 1×3×32×32 (3→16, 3×3) against torch.nn.functional.conv2d:
      the per-call overhead of the operator registration, dispatch and the NumPy hand-off.

Every pair is checked for equal outputs and gradients before it is timed. Training steps: 3 rounds, each
timing every variant after a pause and an untimed step, as the median of 5 steps in a row; medians over the
rounds. Single
calls: the fastest call of interleaved blocks (fastconv.benchmark.machine), in 3 sweeps; median ratio.

    python bench/torch_interop.py [--rounds 3] [--threads 2] [--layers]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fastconv as fc
import fastconv.torch as fct
from fastconv.benchmark.machine import interleaved_times
from fastconv.benchmark.shapes import SMALL_CALL
from fastconv.nn._torch import TorchLocallyConnected2d


def mobilenet_v1(num_classes=10, width=1.0):
    """MobileNet v1 (Howard et al. 2017): a 3×3/2 conv, then 13 depthwise-separable blocks (3×3 depthwise +
    1×1 pointwise, each followed by batch norm and ReLU), global average pooling, a linear classifier."""
    c = lambda n: int(n * width)  # noqa: E731
    blocks = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
             [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    layers = [nn.Conv2d(3, c(32), 3, 2, 1, bias=False), nn.BatchNorm2d(c(32)), nn.ReLU(inplace=True)]
    for cin, cout, stride in blocks:
        layers += [nn.Conv2d(c(cin), c(cin), 3, stride, 1, groups=c(cin), bias=False), nn.BatchNorm2d(c(cin)),
                   nn.ReLU(inplace=True), nn.Conv2d(c(cin), c(cout), 1, bias=False), nn.BatchNorm2d(c(cout)),
                   nn.ReLU(inplace=True)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c(1024), num_classes)]
    return nn.Sequential(*layers)


def locally_connected_net(image=32, channels=(3, 16, 32), k=5, num_classes=10, torch_twin=False):
    """LocallyConnected2d k×k (same) → ReLU → max-pool 2 → LocallyConnected2d → ReLU → max-pool 2 → Linear."""
    torch.manual_seed(0)
    c0, c1, c2 = channels
    first = fct.LocallyConnected2d(c0, c1, k, image, padding=k // 2)
    second = fct.LocallyConnected2d(c1, c2, k, image // 2, padding=k // 2)
    pool = fct.MaxPool2d
    if torch_twin:
        first, second = (TorchLocallyConnected2d(m.weight.detach(), m.bias.detach(), k, 1, k // 2)
                         for m in (first, second))
        pool = nn.MaxPool2d
    return nn.Sequential(first, nn.ReLU(), pool(2), second, nn.ReLU(), pool(2), nn.Flatten(),
                         nn.Linear(c2 * (image // 4) ** 2, num_classes))


def _step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def _loss_and_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _check(name, a, b, tol=1e-9):
    """Relative max-abs difference of losses and of every gradient below tol (the checks run in float64: in
    float32, batch norm over the last 2×2 maps magnifies rounding differences to percents)."""
    (la, ga), (lb, gb) = a, b
    worst = max([abs(la - lb).item() / abs(lb).item()] +
                [((p - q).abs().max() / q.abs().max().clamp_min(1e-30)).item() for p, q in zip(ga, gb)])
    status = "ok" if worst < tol else "FAILED"
    print(f"check {name}: loss and every gradient agree to {worst:.1e} (relative) {status}")
    return worst < tol


def _time_steps(variants, rounds, steps=5, settle=0.2):
    """{name: [seconds of one step per round]}: each round times every variant, after a pause (the other
    library's thread pool falls asleep) and one untimed step, as the median of `steps` steps in a row (one
    step alone moves by tens of percent on a shared machine)."""
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (enter, step) in variants.items():
            enter()
            time.sleep(settle)
            step()
            one = []
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                one.append(time.perf_counter() - t0)
            times[name].append(statistics.median(one))
    return times


def mobilenet_step(rounds, batch=32, image=64):
    torch.manual_seed(0)
    model = mobilenet_v1().train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, image, image), torch.randint(0, 10, (batch,))
    check, x64 = copy.deepcopy(model).double(), x.double()
    fct.patch(check, fuse_relu=True)
    patched = _loss_and_grads(check, x64, y)
    fct.unpatch(check)
    ok = _check("M1 mobilenet patched vs torch", patched, _loss_and_grads(check, x64, y))
    times = _time_steps({"torch": (lambda: fct.unpatch(model), lambda: _step(model, opt, x, y)),
                         "fastconv": (lambda: fct.patch(model, fuse_relu=True), lambda: _step(model, opt, x, y))},
                        rounds)
    fct.unpatch(model)
    return ok, times


def local_step(rounds, batch=32, image=32):
    ours, theirs = locally_connected_net(image), locally_connected_net(image, torch_twin=True)
    theirs.load_state_dict(ours.state_dict())
    x, y = torch.randn(batch, 3, image, image), torch.randint(0, 10, (batch,))
    ok = _check("L1 locally connected vs unfold+einsum", _loss_and_grads(copy.deepcopy(ours).double(), x.double(), y),
                _loss_and_grads(copy.deepcopy(theirs).double(), x.double(), y))
    opts = {name: torch.optim.SGD(m.parameters(), lr=1e-3) for name, m in (("torch", theirs), ("fastconv", ours))}
    times = _time_steps({"torch": (lambda: None, lambda: _step(theirs, opts["torch"], x, y)),
                         "fastconv": (lambda: None, lambda: _step(ours, opts["fastconv"], x, y))}, rounds)
    return ok, times


def small_call(rounds):
    s = SMALL_CALL
    torch.manual_seed(0)
    x, w, b = torch.randn(s.x_shape), torch.randn(s.w_shape), torch.randn(s.C_out)
    kw = dict(stride=s.stride, padding=s.padding)
    ok = torch.allclose(fct.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw), rtol=1e-4, atol=1e-4)
    print(f"check X1 fastconv.torch.conv2d vs F.conv2d: {'ok' if ok else 'FAILED'}")
    xn, wn, bn = x.numpy(), w.numpy(), b.numpy()
    impls = {"torch": lambda: F.conv2d(x, w, b, **kw), "fastconv": lambda: fct.conv2d(x, w, b, **kw),
             "fastconv (numpy call)": lambda: fc.conv2d(xn, wn, bn, **kw)}
    sweeps = [interleaved_times(impls) for _ in range(rounds)]
    return ok, {name: [sw[name] for sw in sweeps] for name in impls}


def mobilenet_layers(batch=32, image=64):
    """Per distinct conv of M1 (in order): forward + backward of fastconv.torch.conv2d and F.conv2d, each the
    fastest of 3 in thread CPU time at 1 thread (which other processes on the machine do not inflate)."""
    torch.set_num_threads(1)
    fc.set_num_threads(1)
    seen = set()
    print(f"{'M1 layer (batch %d)' % batch:<32} {'torch':>9} {'fastconv':>9} {'speed-up':>9}")
    hw = image
    for m in mobilenet_v1():
        if not isinstance(m, nn.Conv2d):
            continue
        key = (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.groups, hw)
        hw_out = (hw + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
        if key not in seen:
            seen.add(key)
            x = torch.randn(batch, m.in_channels, hw, hw, requires_grad=True)
            w = m.weight.detach().clone().requires_grad_()
            times = []
            for conv in (F.conv2d, fct.conv2d):
                def step(conv=conv):
                    y = conv(x, w, None, stride=m.stride, padding=m.padding, groups=m.groups)
                    torch.autograd.grad(y, (x, w), torch.ones_like(y))
                step()
                best = float("inf")
                for _ in range(3):
                    t0 = time.thread_time()
                    step()
                    best = min(best, time.thread_time() - t0)
                times.append(best)
            kind = "depthwise" if m.groups > 1 else f"{m.in_channels}->{m.out_channels}"
            name = f"{kind} k{m.kernel_size[0]} s{m.stride[0]} {hw}x{hw}"
            print(f"{name:<32} {times[0] * 1e3:>7.2f}ms {times[1] * 1e3:>7.2f}ms {times[0] / times[1]:>8.2f}x")
        hw = hw_out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", action="store_true", help="also M1's convolutions one by one (1 thread)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    fc.set_num_threads(args.threads)
    print(f"fastconv.torch vs torch {torch.__version__}: {args.threads} threads, medians of {args.rounds} rounds, "
          f"fastconv backend {fc.get_backend()} ({fc.isa()})")
    rows = [("M1 MobileNet-v1 train step, 64x64, batch 32 (patched vs torch)", ">= 1.5x", *mobilenet_step(args.rounds)),
            ("L1 locally connected net train step, 32x32, batch 32 (vs unfold+einsum)", ">= 4x",
             *local_step(args.rounds))]
    ok, calls = small_call(args.rounds)
    print(f"{'row':<74} {'torch':>10} {'fastconv':>10} {'speed-up':>9}  target")
    for name, target, passed, t in rows:
        ratio = statistics.median(a / b for a, b in zip(t["torch"], t["fastconv"]))
        print(f"{name:<74} {statistics.median(t['torch']) * 1e3:>8.1f}ms {statistics.median(t['fastconv']) * 1e3:>8.1f}ms "
              f"{ratio:>8.2f}x  {target}{'' if passed else '  (check FAILED)'}")
    overhead = statistics.median(a / b for a, b in zip(calls["fastconv"], calls["torch"]))
    med = {name: statistics.median(v) * 1e6 for name, v in calls.items()}
    print(f"{'X1 one conv2d call 1x3x32x32 3->16 k3 (time fastconv.torch / time torch)':<74} {med['torch']:>8.1f}us "
          f"{med['fastconv']:>8.1f}us {overhead:>8.2f}x  <= 1.2x{'' if ok else '  (check FAILED)'}")
    print(f"    (the same call on NumPy arrays, fastconv.conv2d: {med['fastconv (numpy call)']:.1f}us)")
    if args.layers:
        mobilenet_layers()


if __name__ == "__main__":
    main()
