"""The ``regdecoder`` command line: exit codes, messages in the command line's words, files
written (regdecoder/cli.py). In process through ``cli.main``; two subprocess smoke tests (slow)
check the entry point itself."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

import regdecoder as rd
from regdecoder import cli, demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny simulated data set and its network, written as .h5ad and .tsv."""
    d = tmp_path_factory.mktemp("cli")
    adata = rd.sim.grn(n_obs=60, n_genes=40, n_tfs=4, density=0.3, seed=0)
    net = adata.uns["sim"]["net"]
    net.to_csv(d / "net.tsv", sep="\t", index=False)
    adata.write_h5ad(d / "in.h5ad")
    return d


@pytest.fixture(autouse=True)
def _restore_settings():
    """main() sets verbosity, threads and progress bars, as a command should: put them back."""
    before = (rd.settings.verbosity, torch.get_num_threads(), rd.settings.progress)
    yield
    rd.settings.verbosity, rd.settings.progress = before[0], before[2]
    torch.set_num_threads(before[1])


def main(*args) -> int:
    return cli.main([*map(str, args), *([] if args and args[0] in ("--help", "--version") else [])])


def fit(files, out, *more) -> int:
    return main("fit", files / "in.h5ad", "--net", files / "net.tsv", "--out", out, "-q", "--n-threads", "1", *more)


def user_error(capsys, *words) -> str:
    """The one 'error:' line of a failed command (no traceback), holding ``words``."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: "), err
    for w in words:
        assert w in line, line
    return line


# ------------------------------------------------------------ commands and files


def test_fit_then_infer(files, tmp_path, capsys):
    out, model = tmp_path / "sub" / "out.h5ad", tmp_path / "model.pt"
    assert fit(files, out, "--model", model, "--seed", "1") == 0
    assert "wrote" in capsys.readouterr().out
    fitted = ad.read_h5ad(out)
    assert fitted.obsm["regdecoder"].shape == (60, 4)
    assert fitted.uns["regdecoder"]["params"]["seed"] == 1
    assert "regdecoder_weights" in fitted.varm and "regdecoder_padj" in fitted.obsm
    assert list(rd.tl.Model.load(model).latent_names) == list(fitted.uns["regdecoder"]["latent_names"])

    out2 = tmp_path / "inferred.h5ad"
    assert main("infer", files / "in.h5ad", "--model", model, "--out", out2, "--key-added", "tfa", "-q") == 0
    inferred = ad.read_h5ad(out2)
    assert list(inferred.obsm["tfa"].columns) == list(fitted.obsm["regdecoder"].columns)  # TF names travel
    # the same cells: inference with the frozen decoder finds the fitted activities again
    for a, b in zip(np.asarray(fitted.obsm["regdecoder"]).T, np.asarray(inferred.obsm["tfa"]).T, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 0.99


@pytest.mark.slow  # two fits and an inference through zarr stores: 11 s, the longest of the quick subset
@pytest.mark.filterwarnings("ignore:Writing zarr v2:UserWarning")  # anndata announces that its zarr default will change
def test_zarr_stores_in_and_out(files, tmp_path):
    """An --out ending in .zarr is a zarr store (it was an HDF5 file under that name, which
    `ad.read_zarr` cannot open, written after the whole fit), and a .zarr input is read."""
    store = tmp_path / "in.zarr"
    ad.read_h5ad(files / "in.h5ad").write_zarr(store)
    out, model = tmp_path / "out.zarr", tmp_path / "m.pt"
    code = main("fit", store, "--net", files / "net.tsv", "--out", out, "--model", model, "-q", "--n-threads", "1")
    assert code == 0 and out.is_dir()
    fitted = ad.read_zarr(out)
    reference = tmp_path / "ref.h5ad"
    assert fit(files, reference) == 0
    np.testing.assert_array_equal(fitted.obsm["regdecoder"], ad.read_h5ad(reference).obsm["regdecoder"])
    assert main("infer", out, "--model", model, "--out", tmp_path / "new.zarr", "--key-added", "tfa", "-q") == 0
    inferred = ad.read_zarr(tmp_path / "new.zarr")
    assert list(rd.get.activities(inferred, key="tfa").var_names) == list(fitted.obsm["regdecoder"].columns)


def test_use_raw_reads_raw(files, tmp_path):
    adata = ad.read_h5ad(files / "in.h5ad")
    adata.layers["expr"] = adata.X.copy()
    adata.raw = adata.copy()
    adata.X = np.zeros_like(adata.X)  # e.g. scaled data; the fit must not read it
    adata.write_h5ad(tmp_path / "raw.h5ad")
    common = ["--net", str(files / "net.tsv"), "-q", "--n-threads", "1"]
    assert main("fit", tmp_path / "raw.h5ad", "--out", tmp_path / "a.h5ad", "--use-raw", *common) == 0
    assert main("fit", tmp_path / "raw.h5ad", "--out", tmp_path / "b.h5ad", "--layer", "expr", *common) == 0
    a, b = ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(tmp_path / "b.h5ad")
    np.testing.assert_array_equal(a.obsm["regdecoder"], b.obsm["regdecoder"])
    assert a.raw is not None and (a.X == 0).all()  # the input is written back unchanged
    assert a.uns["regdecoder"]["params"]["use_raw"]


def test_use_raw_is_passed_on_when_the_core_accepts_it(files, tmp_path, monkeypatch):
    calls = {}

    def fit_decoder(adata, *, net, key_added="regdecoder", use_raw=False, **options):
        """A stand-in with the use_raw= parameter."""
        calls["use_raw"] = use_raw
        calls["n_vars"] = adata.n_vars
        adata.obsm[key_added] = np.zeros((adata.n_obs, 2), dtype=np.float32)
        adata.uns[key_added] = {}

    adata = ad.read_h5ad(files / "in.h5ad")
    adata.raw = adata.copy()
    adata = adata[:, :30].copy()  # X has fewer genes than raw
    adata.write_h5ad(tmp_path / "raw.h5ad")
    monkeypatch.setattr(rd.tl, "fit_decoder", fit_decoder)
    assert main("fit", tmp_path / "raw.h5ad", "--net", files / "net.tsv", "--out", tmp_path / "o.h5ad",
                "--use-raw", "-q") == 0  # fmt: skip
    assert calls == {"use_raw": True, "n_vars": 30}  # the AnnData itself, with use_raw=True


def test_tmin_and_key_added(files, tmp_path):
    assert fit(files, tmp_path / "o.h5ad", "--tmin", "3", "--key-added", "acts") == 0
    fitted = ad.read_h5ad(tmp_path / "o.h5ad")
    assert fitted.uns["acts"]["params"]["tmin"] == 3
    assert "acts" in fitted.obsm


def test_each_stage_says_its_time(files, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="regdecoder"):
        assert main("fit", files / "in.h5ad", "--net", files / "net.tsv", "--out", tmp_path / "o.h5ad",
                    "--model", tmp_path / "m.pt", "--n-threads", "1") == 0  # fmt: skip
    timed = [r.getMessage() for r in caplog.records if re.search(r" in \d+\.\d s", r.getMessage())]
    stages = ["read ", "read the network", "read 60 cells", "als fit, ", "latents of 60 cells", "marginal t",
              "finished fit_decoder", "wrote "]  # fmt: skip
    for stage in stages:
        assert any(line.startswith(stage) for line in timed), (stage, timed)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="regdecoder"):
        assert main("infer", files / "in.h5ad", "--model", tmp_path / "m.pt", "--out", tmp_path / "i.h5ad") == 0
    timed = [r.getMessage() for r in caplog.records if re.search(r" in \d+\.\d s", r.getMessage())]
    for stage in ["read ", "latents of 60 cells", "finished infer", "wrote "]:
        assert any(line.startswith(stage) for line in timed), (stage, timed)


def test_the_latent_pass_is_announced_before_it_starts(files, caplog):
    adata = ad.read_h5ad(files / "in.h5ad")
    with caplog.at_level(logging.INFO, logger="regdecoder"):
        rd.tl.fit_decoder(adata, net=adata.uns["sim"]["net"])
    lines = [r.getMessage() for r in caplog.records]
    start = next(i for i, m in enumerate(lines) if m.startswith("solving the latents of every cell"))
    assert lines[start + 1].startswith("latents of 60 cells")  # it reports its time next


# ------------------------------------------------------- errors and exit codes


def test_help_lists_commands_and_exits_0(capsys):
    assert main("--help") == 0
    out = capsys.readouterr().out
    for word in ("fit", "infer", "demo", "Exit status"):
        assert word in out


def test_usage_error_exits_2(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    assert main("fit", "in.h5ad", "--out", "out.h5ad") == 2  # --net missing
    err = capsys.readouterr().err
    assert "usage:" in err and "--net" in err


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "in.h5ad", "--net", "net.tsv", "--out", "o.h5ad", "--bogus"],
        ["fit", "in.h5ad", "--net", "net.tsv", "--out", "o.h5ad", "--layer", "x", "--use-raw"],
        ["infer", "in.h5ad", "--out", "out.h5ad"],  # --model missing
        ["fit", "in.h5ad", "--net", "net.tsv", "--out", "o.h5ad", "--seed", "one"],
        ["fit", "in.h5ad", "--net", "net.tsv", "--out", "o.h5ad", "--n-threads", "0"],
        ["demo", "--n-threads", "0"],
        ["frobnicate"],
        [],
    ],
    ids=[
        "unknown-option",
        "layer-and-raw",
        "no-model",
        "bad-int",
        "no-threads",
        "demo-no-threads",
        "unknown-command",
        "no-command",
    ],  # fmt: skip
)
def test_usage_errors_return_2(args, capsys):
    assert cli.main(args) == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_input_file_exits_1(files, tmp_path, capsys):
    assert main("fit", tmp_path / "nothing.h5ad", "--net", files / "net.tsv", "--out", tmp_path / "o.h5ad") == 1
    user_error(capsys, "nothing.h5ad")
    assert not (tmp_path / "o.h5ad").exists()


def test_missing_net_file_exits_1(files, tmp_path, capsys):
    assert main("fit", files / "in.h5ad", "--net", tmp_path / "nonet.tsv", "--out", tmp_path / "o.h5ad") == 1
    user_error(capsys, "nonet.tsv")


def test_bad_net_exits_1(files, tmp_path, capsys):
    (tmp_path / "bad.tsv").write_text("tf\tgene\nTF0\tG01\n")
    assert main("fit", files / "in.h5ad", "--net", tmp_path / "bad.tsv", "--out", tmp_path / "o.h5ad") == 1
    user_error(capsys, "source", "target")


def test_a_net_with_another_separator_names_sep(files, tmp_path, capsys):
    net = rd.datasets.read_net(files / "net.tsv")
    net.to_csv(tmp_path / "net.tsv", sep=";", index=False)  # a .tsv read with tabs: one column
    assert main("fit", files / "in.h5ad", "--net", tmp_path / "net.tsv", "--out", tmp_path / "o.h5ad", "-q") == 1
    line = user_error(capsys, "`--sep`", "source")
    assert "sep=" not in line
    assert fit(files, tmp_path / "o.h5ad", "--net", tmp_path / "net.tsv", "--sep", ";") == 0


def test_genes_mismatch_exits_1(files, tmp_path, capsys):
    model = tmp_path / "model.pt"
    assert fit(files, tmp_path / "fit.h5ad", "--model", model) == 0
    other = ad.read_h5ad(files / "in.h5ad")
    other.var_names = [f"other{i}" for i in range(other.n_vars)]
    other.write_h5ad(tmp_path / "other.h5ad")
    assert main("infer", tmp_path / "other.h5ad", "--model", model, "--out", tmp_path / "o.h5ad") == 1
    user_error(capsys, "genes")


def test_use_raw_without_raw_is_a_user_error(files, tmp_path, capsys):
    assert fit(files, tmp_path / "o.h5ad", "--use-raw") == 1
    user_error(capsys, "has no .raw")


def test_missing_layer_is_a_user_error(files, tmp_path, capsys):
    assert fit(files, tmp_path / "o.h5ad", "--layer", "counts") == 1
    user_error(capsys, "--layer 'counts'")


@pytest.fixture
def epochs(monkeypatch):
    """Counts the fits that start (an error in the input must come before any)."""
    calls = []
    real = rd.tl._fit.fit
    monkeypatch.setattr(rd.tl._fit, "fit", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_errors_name_the_options_not_python_arguments(files, tmp_path, capsys, epochs):
    assert fit(files, tmp_path / "o.h5ad", "--seed", "-3") == 1  # the library's TypeError/ValueError
    line = user_error(capsys, "`--seed`", "-3")
    assert "seed`" not in line.replace("--seed`", "")
    scaled = ad.read_h5ad(files / "in.h5ad")
    scaled.raw = scaled.copy()
    scaled.X = scaled.X - scaled.X.mean(0)  # as after sc.pp.scale: negative values
    scaled.write_h5ad(tmp_path / "scaled.h5ad")
    code = main("fit", tmp_path / "scaled.h5ad", "--net", files / "net.tsv", "--out", tmp_path / "o.h5ad", "-q")
    assert code == 1
    line = user_error(capsys, "negative", "`--use-raw`", "`--layer`")
    assert "use_raw" not in line and "layer=" not in line
    assert epochs == []  # refused before any training
    assert not (tmp_path / "o.h5ad").exists()


def test_warnings_name_the_options_too(files, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        assert fit(files, tmp_path / "o.h5ad", "--tmin", "12") == 0  # some TFs have fewer targets
    dropped = [r.getMessage() for r in caplog.records if "Dropped" in r.getMessage()]
    assert dropped and "--tmin 12" in dropped[0] and "tmin=" not in dropped[0]
    caplog.clear()
    adata = ad.read_h5ad(files / "in.h5ad")
    with caplog.at_level(logging.WARNING, logger="regdecoder"):  # in Python, Python's words
        rd.tl.fit_decoder(adata, net=adata.uns["sim"]["net"], tmin=12)
    assert "tmin=12" in caplog.text


def test_the_advice_of_the_few_samples_warning_can_be_followed_on_the_command_line(files, tmp_path, caplog):
    """A handful of cells: the warning says `--weights fit` learns the weights anyway (it said
    `weights='fit'`, which the command line had no option for), and the option does it."""
    few = ad.read_h5ad(files / "in.h5ad")[:3].copy()
    few.write_h5ad(tmp_path / "few.h5ad")
    args = ["fit", tmp_path / "few.h5ad", "--net", files / "net.tsv", "-q"]
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        assert main(*args, "--out", tmp_path / "a.h5ad") == 0
    assert "--weights fit" in caplog.text and "weights=" not in caplog.text
    assert ad.read_h5ad(tmp_path / "a.h5ad").uns["regdecoder"]["params"]["weights"] == "prior"
    assert main(*args, "--out", tmp_path / "b.h5ad", "--weights", "fit", "--collinear", "keep") == 0
    params = ad.read_h5ad(tmp_path / "b.h5ad").uns["regdecoder"]["params"]
    assert params["weights"] == "fit" and params["collinear"] == "keep"


def test_a_fit_stopped_at_max_epochs_advises_the_option(files, tmp_path, caplog):
    """The unconverged warning advised `recipe={'max_epochs': 4}`, which the command line had
    no option for; --max-epochs sets it."""
    with caplog.at_level(logging.WARNING, logger="regdecoder"):
        assert fit(files, tmp_path / "o.h5ad", "--max-epochs", "2") == 0
    assert "--max-epochs 4" in caplog.text and "recipe=" not in caplog.text
    assert ad.read_h5ad(tmp_path / "o.h5ad").uns["regdecoder"]["params"]["recipe"]["max_epochs"] == 2


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("use_raw=True but adata.raw is None; pass `layer=` or leave use_raw=False to use adata.X.",
         "--use-raw but adata.raw is None; pass `--layer` or leave out --use-raw to use adata.X."),
        ("Write to another key, e.g. `key_added='x_infer'`.", "Write to another key, e.g. `--key-added x_infer`."),
        ("No TF has at least tmin=5 targets. Lower `tmin`.", "No TF has at least --tmin 5 targets. Lower `--tmin`."),
        ("device='cuda' but CUDA is not available; use device='cpu'.", "--device cuda but CUDA is not available; use --device cpu."),
        ("fit with `rd.tl.fit_decoder(adata, net=net, soft_mask=True)` or pass `net=`.",
         "fit with `rd.tl.fit_decoder(adata, net=net, soft_mask=True)` or pass `--net`."),
        ("pass weights='fit' or seeds=3", "pass --weights fit or seeds=3"),  # no --seeds option: as it was
        ("(collinear='merge'; 'merge', 'drop' or 'keep')", "(--collinear merge; 'merge', 'drop' or 'keep')"),
        ("the activities may change with more epochs: recipe={'max_epochs': 100}.",
         "the activities may change with more epochs: --max-epochs 100."),
    ],
)  # fmt: skip
def test_python_arguments_in_the_command_lines_words(message, words):
    assert cli.in_flags(message, cli._flags(cli.build_parser(), "fit")) == words


# ------------------------------------------------------------ options and help


def test_every_subcommand_takes_n_threads(capsys):
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0]))]
    for name, command in sub.choices.items():
        assert "--n-threads" in command._option_string_actions, name


def test_demo_runs_with_n_threads(tmp_path, capsys):
    code = main("demo", "--out", tmp_path, "--n-train", "60", "--n-test", "10", "--n-genes", "40", "--n-tfs", "4",
                "--density", "0.3", "--n-threads", "1")  # fmt: skip
    assert code == 0 and torch.get_num_threads() == 1
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "recovery.png").is_file()
    assert "held-out cells" in capsys.readouterr().out


def _actions(parser):
    for action in parser._actions:
        yield parser.prog, action
        if action.choices and isinstance(action.choices, dict):  # subcommands
            for sub in action.choices.values():
                yield from _actions(sub)


def test_every_option_and_command_has_help():
    parser = cli.build_parser()
    seen = 0
    for prog, action in _actions(parser):
        seen += 1
        if action.dest == "command":
            for choice in action._choices_actions:
                assert choice.help, f"{prog}: subcommand {choice.dest} has no help"
        else:
            assert action.help, f"{prog}: {action.option_strings or action.dest} has no help"
    assert seen > 30


def test_demo_help(capsys):
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: regdecoder demo")
    assert "--n-train" in out and "--out" in out and "--n-threads" in out


def test_python_m_demo_help_names_itself(capsys):
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m regdecoder.demo")


def test_version_is_0_2_everywhere(capsys):
    assert main("--version") == 0
    assert capsys.readouterr().out.strip() == f"regdecoder {rd.__version__}"
    assert rd.__version__.startswith("0.2.")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'attr = "regdecoder._version.__version__"' in pyproject
    readme = (ROOT / "README.md").read_text()
    assert "0.1.0's" in readme and "0.2.0" in readme  # the old behaviour is 0.1.0's, today's is 0.2


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["regdecoder"] == "regdecoder.cli:main"


# ------------------------------------------------------ the entry point (slow)


def run(*args, cwd=None):
    """``python -m regdecoder ARGS`` in a fresh process, importing this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "regdecoder", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
        timeout=300,
    )  # fmt: skip


@pytest.mark.slow  # starts Python twice (~15 s each on a busy 2-core machine)
def test_python_m_regdecoder_fits_and_infers(files, tmp_path):
    out, model = tmp_path / "out.h5ad", tmp_path / "model.pt"
    proc = run("fit", files / "in.h5ad", "--net", files / "net.tsv", "--out", out, "--model", model, "--n-threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "latents of 60 cells" in proc.stderr  # the info log of each stage
    proc = run("infer", files / "in.h5ad", "--model", model, "--out", tmp_path / "i.h5ad", "-q")
    assert proc.returncode == 0, proc.stderr
    assert ad.read_h5ad(tmp_path / "i.h5ad").obsm["regdecoder"].shape == (60, 4)


@pytest.mark.slow  # starts Python
def test_python_m_regdecoder_error_is_one_line(files, tmp_path):
    proc = run("fit", files / "in.h5ad", "--net", files / "net.tsv", "--out", tmp_path / "o.h5ad", "--seed", "-3")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: `--seed` must be")
