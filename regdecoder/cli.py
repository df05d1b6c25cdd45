"""The ``regdecoder`` command: fit a masked decoder, infer TF activities, run the demo.

Examples::

    regdecoder fit cells.h5ad --net collectri.tsv --out fitted.h5ad --model model.pt
    regdecoder infer new_cells.h5ad --model model.pt --out new_fitted.h5ad
    regdecoder demo --out results_demo

Exit status: 0 on success, 1 for an error in the input (a missing file, a bad
network, genes that do not match; the message is printed as ``error: ...``), 2 for
a command line that cannot be parsed.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

import anndata as ad
import pandas as pd

from . import datasets, demo, tl
from ._settings import Stages, add_threads_option, settings
from ._version import __version__

logger = logging.getLogger("regdecoder")

_EPILOG = (
    "Exit status: 0 on success, 1 for an error in the input (printed as 'error: ...'), "
    "2 for a command line that cannot be parsed. Run 'regdecoder COMMAND --help' for a command's options."
)


class UserError(Exception):
    """An error in what the user gave (a file, an option): printed without a traceback."""


# --------------------------------------------------- messages in the command line's words


def _flags(parser: argparse.ArgumentParser, command: str | None) -> dict[str, argparse.Action]:
    """The options of ``command`` (and the main parser), by the Python name they stand for."""
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            actions += action.choices[command]._actions
    return {a.dest: a for a in actions if a.option_strings and a.dest not in ("help", "version")}


def in_flags(text: str, flags: dict[str, argparse.Action]) -> str:
    """A library message in the command line's words: ``use_raw=True`` -> ``--use-raw``,
    ``layer='counts'`` -> ``--layer counts``, `` `seed` `` -> `` `--seed` ``, for every
    Python argument the command has an option for; code in backticks with a call
    (``rd.tl.fit_decoder(adata, net=net)``) is left as it is."""
    if not flags:
        return text
    if "max_epochs" in flags:  # the one recipe field the command line has an option for
        text = re.sub(r"recipe=\{'max_epochs': (\d+)\}", r"max_epochs=\1", text)
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    assign = re.compile(rf"(leave )?(?<![\w.])({names})=('[^']*'|\"[^\"]*\"|[\w.:+-]*)")

    def option(m: re.Match) -> str:
        action, value = flags[m.group(2)], m.group(3).strip("'\"")
        flag = action.option_strings[-1]
        if value in ("False", "None"):  # the option left out
            return f"leave out {flag}" if m.group(1) else f"no {flag}"
        if isinstance(action, argparse._StoreTrueAction) or not value:
            return (m.group(1) or "") + flag
        return f"{m.group(1) or ''}{flag} {value}"

    parts = text.split("`")
    for i, part in enumerate(parts):
        if i % 2 and "(" in part:  # a Python call in backticks: leave it
            continue
        parts[i] = flags[part].option_strings[-1] if i % 2 and part in flags else assign.sub(option, part)
    return "`".join(parts)


class _InFlags(logging.Filter):
    """Warnings logged while a command runs, in the command line's words."""

    def __init__(self, flags: dict[str, argparse.Action]) -> None:
        super().__init__()
        self.flags = flags

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            record.msg, record.args = in_flags(record.getMessage(), self.flags), None
        return True


# ------------------------------------------------------------------------ parser


def _add_input_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--layer", metavar="L", default=None, help="read the expression from adata.layers[L] instead of adata.X"
    )
    where.add_argument(
        "--use-raw",
        action="store_true",
        help="read the expression from adata.raw (e.g. log-normalised data kept before scaling); "
        "the results are written to the main AnnData",
    )
    p.add_argument(
        "--key-added",
        metavar="K",
        default="regdecoder",
        help="write the activities to obsm[K] and their metadata to uns[K] (default: %(default)s)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        metavar="D",
        default=None,
        help="torch device: auto, cpu, cuda, cuda:N (default: settings.device, i.e. auto)",
    )
    add_threads_option(p)
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only, no progress bar")
    noise.add_argument("-v", "--verbose", action="store_true", help="print debugging messages too")


def build_parser() -> argparse.ArgumentParser:
    """The ``regdecoder`` argument parser (subcommands ``fit``, ``infer``, ``demo``)."""

    parser = argparse.ArgumentParser(
        prog="regdecoder",
        description="TF activities from a masked decoder trained without an encoder, on .h5ad files.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"regdecoder {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fit = sub.add_parser(
        "fit",
        help="fit the decoder on cells and write their TF activities",
        description="Fit a decoder masked by a prior TF -> target network on the cells of IN and write "
        "IN with the results to OUT: obsm[K] (cells x TFs, the activities), varm[K_weights] (genes x TFs) "
        "and uns[K] (TF names, parameters, loss history). Give --model to keep the model for "
        "'regdecoder infer'.",
        epilog=_EPILOG,
    )
    fit.add_argument(
        "input", metavar="IN.h5ad", help="cells x genes, log-normalised expression in X (or --layer); .h5ad or .zarr"
    )
    fit.add_argument(
        "--net",
        metavar="NET",
        required=True,
        help="prior network, a TSV or CSV file with columns source (TF), target (gene) and optionally "
        "weight (negative: repression), e.g. CollecTRI",
    )
    fit.add_argument(
        "--sep",
        metavar="SEP",
        default=None,
        help="column separator of NET (default: a tab for .tsv, .tab and .txt files, a comma otherwise)",
    )
    fit.add_argument(
        "--out", metavar="OUT.h5ad", required=True, help="where to write the AnnData with the results (.h5ad or .zarr)"
    )
    fit.add_argument("--model", metavar="MODEL.pt", default=None, help="also save the fitted model to this file")
    _add_input_options(fit)
    fit.add_argument("--seed", metavar="N", type=int, default=0, help="random seed of the fit (default: %(default)s)")
    fit.add_argument(
        "--gene-likelihood",
        metavar="L",
        choices=("mse", "normal"),
        default="mse",
        help="mse: log-normalised expression (a ReLU output, zeros censored); normal: signed data such as "
        "contrasts, log fold changes or scaled values (a linear output) (default: %(default)s)",
    )
    fit.add_argument(
        "--tmin",
        metavar="N",
        type=int,
        default=5,
        help="drop TFs with fewer than N targets among the genes of IN (default: %(default)s)",
    )
    fit.add_argument(
        "--max-epochs",
        metavar="N",
        type=int,
        default=None,
        help="stop the fit after N epochs if the loss has not settled before (default: the recipe's, 50)",
    )
    fit.add_argument(
        "--weights",
        metavar="W",
        choices=("auto", "fit", "prior"),
        default="auto",
        help="fit: learn the weights (shrunk toward the net's signs); prior: keep the net's signs; auto: prior "
        "when there are too few cells to learn them (default: %(default)s)",
    )
    fit.add_argument(
        "--collinear",
        metavar="C",
        choices=("merge", "drop", "keep"),
        default="merge",
        help="TFs with identical regulons among the genes: merge into one activity named A|B, drop all but "
        "the first, or keep them apart (default: %(default)s)",
    )
    _add_run_options(fit)
    fit.set_defaults(func=_fit)

    infer = sub.add_parser(
        "infer",
        help="infer TF activities of new cells with a saved model",
        description="Infer the TF activities of the cells of IN with the decoder of a saved model frozen, "
        "and write IN with obsm[K] and uns[K] to OUT. IN must hold the model's genes (any order).",
        epilog=_EPILOG,
    )
    infer.add_argument("input", metavar="IN.h5ad", help="cells x genes, processed like the training data; .h5ad or .zarr")
    infer.add_argument("--model", metavar="MODEL.pt", required=True, help="a model saved by 'regdecoder fit --model'")
    infer.add_argument(
        "--out", metavar="OUT.h5ad", required=True, help="where to write the AnnData with the results (.h5ad or .zarr)"
    )
    _add_input_options(infer)
    _add_run_options(infer)
    infer.set_defaults(func=_infer)

    dem = sub.add_parser(
        "demo",
        help="simulate the paper's setting, fit, infer held-out cells and write the results",
        description=demo.__doc__.split("\n\n")[1].replace("\n", " "),
    )
    demo.add_arguments(dem)
    dem.set_defaults(func=_demo)
    return parser


# ---------------------------------------------------------------------- commands


def _zarr(path) -> bool:
    """A path that names a zarr store (by its suffix): read and written with anndata's zarr I/O."""
    return Path(path).suffix.lower() == ".zarr"


def _read_anndata(path: str):
    p = Path(path)
    if not (p.is_dir() if _zarr(p) else p.is_file()):
        msg = f"No input file at {path!r}."
        raise UserError(msg)
    try:
        return ad.read_zarr(p) if _zarr(p) else ad.read_h5ad(p)
    except OSError as err:  # h5py's; zarr's GroupNotFoundError (a directory that is not a store) is one too
        msg = f"Could not read {path!r} as an {'.zarr store' if _zarr(p) else '.h5ad file'} ({err})."
        raise UserError(msg) from err


def _read_net(path: str, sep: str | None = None):
    try:
        return datasets.read_net(path, sep=sep)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        msg = f"Could not read {path!r} as a TSV or CSV network table ({err})."
        raise UserError(msg) from err


def _write_anndata(adata, path: str) -> None:
    """``path`` as .h5ad, or as a zarr store when it ends in ``.zarr`` (an HDF5 file under that
    name could be read by neither reader's usual call)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    adata.write_zarr(p) if _zarr(p) else adata.write_h5ad(p)


def _expression(adata, args) -> dict:
    """The keyword arguments that make a tool read the chosen expression."""
    if args.layer is not None:
        if args.layer not in adata.layers:
            msg = f"--layer {args.layer!r} is not a layer of {args.input!r} (layers: {list(adata.layers)})."
            raise UserError(msg)
        return {"layer": args.layer}
    if args.use_raw:
        if adata.raw is None:
            msg = f"--use-raw was given but {args.input!r} has no .raw; drop --use-raw to use X, or give --layer."
            raise UserError(msg)
        return {"use_raw": True}
    return {}


def _device(args) -> str:
    return args.device if args.device is not None else settings.device


def _fit(args) -> None:
    clock = Stages()
    adata = _read_anndata(args.input)
    clock.done("read %s (%d cells x %d genes)", args.input, adata.n_obs, adata.n_vars)
    net = _read_net(args.net, args.sep)
    clock.done("read the network %s (%d edges)", args.net, len(net))
    kwargs = _expression(adata, args)
    t0 = time.perf_counter()
    settings.progress = settings.progress and not args.quiet
    model = tl.fit_decoder(
        adata,
        net=net,
        tmin=args.tmin,
        weights=args.weights,
        collinear=args.collinear,
        recipe=None if args.max_epochs is None else {"max_epochs": args.max_epochs},
        gene_likelihood=args.gene_likelihood,
        seed=args.seed,
        key_added=args.key_added,
        device=_device(args),
        **kwargs,
    )
    clock = Stages()  # fit_decoder logs its own stages
    _write_anndata(adata, args.out)
    clock.done("wrote %s", args.out)
    z = adata.obsm[args.key_added]
    print(
        f"fitted {z.shape[1]} TFs on {z.shape[0]} cells in {time.perf_counter() - t0:.1f} s; "
        f"wrote {args.out} (obsm[{args.key_added!r}])"
    )
    if args.model is not None:
        Path(args.model).parent.mkdir(parents=True, exist_ok=True)
        model.save(args.model)
        print(f"saved the model to {args.model}")


def _infer(args) -> None:
    clock = Stages()
    adata = _read_anndata(args.input)
    clock.done("read %s (%d cells x %d genes)", args.input, adata.n_obs, adata.n_vars)
    try:
        model = tl.Model.load(args.model, device=_device(args))
    except (OSError, ValueError):
        raise  # no file, or not a model file: regdecoder's own message
    except Exception as err:  # torch's unpickler fails in many ways on a file that is not a torch file
        msg = f"Could not read {args.model!r} as a regdecoder model ({err})."
        raise UserError(msg) from err
    kwargs = _expression(adata, args)
    t0 = time.perf_counter()
    tl.infer(adata, model, key_added=args.key_added, **kwargs)
    clock = Stages()  # infer logs its own stages
    _write_anndata(adata, args.out)
    clock.done("wrote %s", args.out)
    z = adata.obsm[args.key_added]
    print(
        f"inferred {z.shape[1]} TFs for {z.shape[0]} cells in {time.perf_counter() - t0:.1f} s; "
        f"wrote {args.out} (obsm[{args.key_added!r}])"
    )


def _demo(args) -> None:
    demo.run(args)


# -------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run ``regdecoder`` with the arguments ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as err:  # --help, --version (0) or a usage error (2)
        return int(err.code or 0)

    if getattr(args, "quiet", False):
        settings.verbosity = "warning"
    elif getattr(args, "verbose", False):
        settings.verbosity = "debug"
    elif settings.verbosity < 2:
        settings.verbosity = "info"
    if getattr(args, "n_threads", None) is not None:
        try:
            settings.n_threads = args.n_threads
        except ValueError as err:
            parser.print_usage(sys.stderr)
            print(f"error: --n-threads: {err}", file=sys.stderr)
            return 2
    flags = _flags(parser, args.command)
    words = _InFlags(flags)
    logger.addFilter(words)
    try:
        args.func(args)
    except (UserError, OSError, ValueError, KeyError, TypeError) as err:
        # errors in the input, raised by regdecoder with a message that names the fix (in Python's words,
        # translated here, in one place, to the options of the command line)
        logger.debug("traceback:", exc_info=True)
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {in_flags(str(message), flags)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        logger.removeFilter(words)
    return 0


if __name__ == "__main__":
    sys.exit(main())
