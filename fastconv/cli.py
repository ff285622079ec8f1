"""`fastconv` command line: info, train, demo, visualize, bench. Argument parsing and exit codes only: the
applications live in fastconv.app, the benchmark in fastconv.benchmark."""
from __future__ import annotations

import argparse
import sys


def _fail(command, message) -> int:
    """A command's error: the message on stderr, exit status 2."""
    print(f"fastconv {command}: {message}", file=sys.stderr)
    return 2


def _info(args) -> int:
    import fastconv as fc
    from fastconv import backends

    print(f"fastconv {fc.__version__}")
    print(f"backends available: {', '.join(fc.available_backends())} (default: {fc.get_backend()})")
    for name, why in backends.unavailable_reasons().items():
        print(f"  {name}: unavailable ({why})")
    print(f"threads: {fc.get_num_threads()}")
    if fc.isa() is not None:
        from fastconv import _cpp
        print(f"isa: {fc.isa()} (levels of this build: {', '.join(_cpp.isa_levels())}; this CPU runs: "
              f"{', '.join(_cpp.supported_isas())}; FASTCONV_ISA caps it)")
        print(f"cpp build: {_cpp.build_info()}")
        if args.kernels:
            print("kernels (per op, best first; the first that can compute a call and pays on it runs; "
                  "fc.kernel_for names it, fc.use_kernel or FASTCONV_KERNEL force one):")
            for op, names in fc.implementations().items():
                print(f"  {op}: {', '.join(names)}")
    return 0


# Tuned on digits: 98.0-98.6% test accuracy over seeds 0-3 in ~12 s with the cpp backend on 2 cores.
TRAIN_DEFAULTS = dict(image_size=16, epochs=20, batch_size=32, lr=2e-3, schedule="cosine", shift=1, seed=0)


def _add_data_args(p, image_size, size_help="digits upsampled to this size (8, 16, 32)") -> None:
    """The dataset options of train, demo and visualize (read by fastconv.app.datasets.load)."""
    from fastconv.app.datasets import NAMES
    p.add_argument("--data", choices=NAMES, default="digits")
    p.add_argument("--data-dir", help="CIFAR-10 python batches directory (for --data cifar10)")
    p.add_argument("--data-path", help=".npz with x, y or x_train, y_train, x_test, y_test (for --data npz)")
    p.add_argument("--image-size", type=int, default=image_size, help=size_help)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the seed CNN on digits, CIFAR-10 or an .npz; print test accuracy",
                       description="Train fastconv.nn.models.seed_cnn with Adam and report test accuracy and "
                                   "wall time. Nothing is downloaded: digits ship with scikit-learn, CIFAR-10 "
                                   "and .npz files are read from paths you give.")
    d = TRAIN_DEFAULTS
    _add_data_args(p, d["image_size"])
    p.add_argument("--variant", choices=["conv", "local", "tiled"], default="conv", help="second layer of the CNN")
    p.add_argument("--channels", default="16,32", help="channels of the two conv layers, e.g. 16,32")
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--lr", type=float, default=d["lr"], help="Adam learning rate")
    p.add_argument("--schedule", choices=["cosine", "constant"], default=d["schedule"],
                   help="learning-rate schedule over the epochs")
    p.add_argument("--shift", type=int, default=d["shift"],
                   help="augment training batches with random translations of up to this many pixels (0: off)")
    p.add_argument("--seed", type=int, default=d["seed"], help="seeds the initial weights and the shuffling")
    p.add_argument("--out", help="save the trained model here (.npz)")
    p.add_argument("--checkpoint-dir", help="save a checkpoint after every epoch here")
    p.add_argument("--backend", help="op backend (default: the fastest available)")
    p.add_argument("--threads", type=int, help="threads of the compiled kernels (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args) -> int:
    import math
    import time

    import fastconv as fc
    from fastconv import data, nn
    from fastconv.app.datasets import load

    start = time.perf_counter()
    if args.backend:
        fc.set_backend(args.backend)
    if args.threads:
        fc.set_num_threads(args.threads)
    try:
        split, _ = load(args.data, data_dir=args.data_dir, data_path=args.data_path, image_size=args.image_size)
    except (FileNotFoundError, ValueError, ImportError) as e:
        return _fail("train", e)
    _, C, H, W = split.train.x.shape
    channels = tuple(int(c) for c in args.channels.split(","))
    model = nn.models.seed_cnn(C, split.num_classes, (H, W), variant=args.variant, channels=channels, rng=args.seed)
    opt = nn.Adam(model, lr=args.lr)

    def schedule(model, epoch, logs):   # cosine annealing to 0 over the run, set after each epoch
        if args.schedule == "cosine":
            opt.lr = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
    augment = (lambda xb, rng: data.random_shift(xb, rng, args.shift)) if args.shift else None
    history = nn.fit(model, split.train, None, epochs=args.epochs, batch_size=args.batch_size, optimizer=opt,
                     callbacks=[schedule], seed=args.seed, checkpoint_dir=args.checkpoint_dir,
                     progress=not args.no_progress, augment=augment)
    loss, acc = nn.evaluate(model, split.test)
    wall = time.perf_counter() - start
    print(f"train: {len(split.train.x)} images {C}x{H}x{W}, {args.epochs} epochs, final train accuracy "
          f"{history['train_acc'][-1]:.4f}, backend {fc.get_backend()}")
    print(f"test accuracy: {acc:.4f} (loss {loss:.4f}) on {len(split.test.x)} images")
    print(f"wall time: {wall:.1f} s")
    if args.out:
        nn.save(model, args.out)
        print(f"saved: {args.out}")
    return 0


def _add_vis(sub) -> None:
    """`fastconv demo` and `fastconv visualize` (fastconv.app.demo, .visualize and .folder)."""
    p = sub.add_parser("demo", help="train the seed CNN, run every visualization, write an HTML report",
                       description="Train fastconv.nn.models.seed_cnn on the bundled digits (or CIFAR-10 from "
                                   "--data-dir), checkpoint each epoch, run every fastconv.vis method and write "
                                   "OUT/index.html with its figures (OUT/figures/*.png).")
    _add_data_args(p, 16)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--fast", action="store_true", help="fewer images and steps (a quick check of the pipeline)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fastconv-report", help="output directory (default: fastconv-report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)
    from fastconv.app.visualize import METHODS
    p = sub.add_parser("visualize", help="run one visualization method on a saved model, write a PNG",
                       description="Load a model saved by fastconv.nn.save (e.g. `fastconv train --out M.npz`) "
                                   "and run one fastconv.vis method on test images of the same data.")
    p.add_argument("--model", help="the saved model (.npz); needed except with --images, where the default is "
                                    "the seed CNN trained for a few seconds on the bundled digits")
    p.add_argument("--torch-model", help="instead of --model: a torch.save'd nn.Module (unpickled: only files you "
                                         "trust) or state dict (with --arch), run on --images DIR; writes the "
                                         "deconvnet, guided, saliency and occlusion figures (or --method's) and "
                                         "index.html to --out DIR")
    p.add_argument("--arch", help="the architecture of a --torch-model state dict: alexnet, vgg11, vgg16_bn, ...")
    p.add_argument("--method", choices=METHODS, help="required with --model; top with --images")
    _add_data_args(p, None, "digits upsampled to this size (default 16); photos resized to it for --torch-model "
                            "(default 224)")
    p.add_argument("--indices", default="0,1,2,3", help="test images to use, e.g. 0,1,2,3")
    p.add_argument("--layer", help="layer name or index (default: the last max-pool)")
    p.add_argument("--channel", type=int, default=0, help="channel (deconvnet)")
    p.add_argument("--target", type=int, help="class (default: each image's true class)")
    p.add_argument("--window", type=int, default=4, help="occluder size (occlusion)")
    p.add_argument("--stride", type=int, default=1, help="occluder stride (occlusion)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps (class_model, deep_dream)")
    p.add_argument("--images", help="a folder of PNG/JPEG photos (class subfolders allowed) instead of --data: "
                                    "--method top over all of them on a Dask cluster, writes the PNG and an HTML page")
    p.add_argument("--scheduler", help="Dask scheduler address for --images (default: a local cluster, one "
                                       "single-threaded worker process per core)")
    p.add_argument("--k", type=int, default=9, help="top activations per channel (top)")
    p.add_argument("--out", default=None, help="PNG to write (default: <method>.png); with --torch-model a "
                                               "directory (default: fastconv-torch-report)")
    p.set_defaults(func=_visualize)


def _demo(args) -> int:
    from fastconv.app.demo import run_demo
    try:
        run_demo(args.out, data=args.data, data_dir=args.data_dir, data_path=args.data_path, epochs=args.epochs,
                 fast=args.fast, seed=args.seed, progress=not args.no_progress, image_size=args.image_size)
    except (FileNotFoundError, ValueError) as e:
        return _fail("demo", e)
    return 0


def _visualize(args) -> int:
    from fastconv.app.visualize import run_visualize
    if args.torch_model:
        return _visualize_torch(args)
    if args.images or args.scheduler:
        return _visualize_images(args)
    if not args.model or not args.method:
        return _fail("visualize", "--model FILE and --method M are needed (or --images DIR for --method top, or "
                                  "--torch-model FILE --images DIR)")
    try:
        path = run_visualize(args.model, args.method, args.out or f"{args.method}.png", data=args.data,
                             data_dir=args.data_dir, data_path=args.data_path, image_size=args.image_size or 16,
                             indices=[int(i) for i in args.indices.split(",")], layer=args.layer, channel=args.channel,
                             target=args.target, window=args.window, stride=args.stride, steps=args.steps,
                             k=args.k)
    except (FileNotFoundError, ValueError, KeyError) as e:
        return _fail("visualize", e)
    if path:
        print(f"wrote {path}")
    return 0


def _visualize_images(args) -> int:
    if not args.images or (args.method or "top") != "top":
        return _fail("visualize", "--images DIR (with or without --scheduler) runs --method top")
    try:
        from fastconv.app.folder import run_folder
        paths = run_folder(args.model, args.images, args.out or "top.png", layer=args.layer, k=args.k,
                           scheduler=args.scheduler)
    except ImportError as e:
        return _fail("visualize", f"--images needs the dask extra (pip install 'fastconv[dask]'): {e}")
    except (FileNotFoundError, ValueError, KeyError) as e:
        return _fail("visualize", e)
    print("wrote " + " and ".join(paths))
    return 0


def _visualize_torch(args) -> int:
    from fastconv.app import torch_model as app
    if not args.images:
        return _fail("visualize", "--torch-model needs --images DIR (a folder of PNG/JPEG photos)")
    try:
        page = app.run(args.torch_model, args.images, args.out or "fastconv-torch-report",
                       [args.method] if args.method else app.METHODS, arch=args.arch, size=args.image_size or 224,
                       layer=args.layer)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
        return _fail("visualize", e)
    print(f"wrote {page}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastconv", description="Fast CNN kernels, layers and visualization.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print version, backends, threads and ISA level")
    p.add_argument("--kernels", action="store_true", help="also list every kernel implementation per op")
    p.set_defaults(func=_info)
    _add_train(sub)
    _add_vis(sub)
    from fastconv.benchmark import add_parser as _add_bench
    _add_bench(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
