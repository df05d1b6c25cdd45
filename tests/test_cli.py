"""The ``regdecoder`` command line: exit codes, messages, files written (regdecoder/cli.py)."""

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import regdecoder as rd
from regdecoder import cli

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


def run(*args, cwd=None):
    """``python -m regdecoder ARGS`` in a fresh process, importing this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "regdecoder", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def assert_user_error(proc, *words):
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    for w in words:
        assert w in last


# -------------------------------------------------------------- in a subprocess


def test_fit_then_infer(files, tmp_path):
    out, model = tmp_path / "sub" / "out.h5ad", tmp_path / "model.pt"
    proc = run("fit", files / "in.h5ad", "--net", files / "net.tsv", "--out", out, "--model", model, "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    fitted = ad.read_h5ad(out)
    assert fitted.obsm["regdecoder"].shape == (60, 4)
    assert fitted.uns["regdecoder"]["params"]["seed"] == 1
    assert "regdecoder_weights" in fitted.varm
    assert model.stat().st_size > 0
    assert list(rd.tl.Model.load(model).latent_names) == list(fitted.uns["regdecoder"]["latent_names"])

    out2 = tmp_path / "inferred.h5ad"
    proc = run("infer", files / "in.h5ad", "--model", model, "--out", out2, "--key-added", "tfa")
    assert proc.returncode == 0, proc.stderr
    inferred = ad.read_h5ad(out2)
    assert inferred.obsm["tfa"].shape == (60, 4)
    # the same cells: inference with the frozen decoder finds the fitted activities again
    assert list(inferred.obsm["tfa"].columns) == list(fitted.obsm["regdecoder"].columns)  # TF names travel
    for a, b in zip(np.asarray(fitted.obsm["regdecoder"]).T, np.asarray(inferred.obsm["tfa"]).T, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 0.99


def test_help_lists_commands_and_exits_0():
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("fit", "infer", "demo", "Exit status"):
        assert word in proc.stdout


def test_usage_error_exits_2(files):
    proc = run("fit", "in.h5ad", "--out", "out.h5ad", cwd=files)  # --net missing
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "--net" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "in.h5ad", "--net", "net.tsv", "--out", "o.h5ad", "--bogus"],
        ["fit", "in.h5ad", "--net", "net.tsv", "--out", "o.h5ad", "--layer", "x", "--use-raw"],
        ["infer", "in.h5ad", "--out", "out.h5ad"],  # --model missing
        ["fit", "in.h5ad", "--net", "net.tsv", "--out", "o.h5ad", "--seed", "one"],
        ["frobnicate"],
        [],
    ],
    ids=["unknown-option", "layer-and-raw", "no-model", "bad-int", "unknown-command", "no-command"],
)
def test_usage_errors_return_2(args, capsys):
    assert cli.main(args) == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_input_file_exits_1(files, tmp_path):
    proc = run("fit", tmp_path / "nothing.h5ad", "--net", files / "net.tsv", "--out", tmp_path / "o.h5ad")
    assert_user_error(proc, "nothing.h5ad")
    assert not (tmp_path / "o.h5ad").exists()


def test_missing_net_file_exits_1(files, tmp_path):
    proc = run("fit", files / "in.h5ad", "--net", tmp_path / "nonet.tsv", "--out", tmp_path / "o.h5ad")
    assert_user_error(proc, "nonet.tsv")


def test_bad_net_exits_1(files, tmp_path):
    (tmp_path / "bad.tsv").write_text("tf\tgene\nTF0\tG01\n")
    proc = run("fit", files / "in.h5ad", "--net", tmp_path / "bad.tsv", "--out", tmp_path / "o.h5ad")
    assert_user_error(proc, "source", "target")


def test_genes_mismatch_exits_1(files, tmp_path):
    model = tmp_path / "model.pt"
    assert cli.main(["fit", str(files / "in.h5ad"), "--net", str(files / "net.tsv"), "--out",
                     str(tmp_path / "fit.h5ad"), "--model", str(model), "-q"]) == 0  # fmt: skip
    other = ad.read_h5ad(files / "in.h5ad")
    other.var_names = [f"other{i}" for i in range(other.n_vars)]
    other.write_h5ad(tmp_path / "other.h5ad")
    proc = run("infer", tmp_path / "other.h5ad", "--model", model, "--out", tmp_path / "o.h5ad")
    assert_user_error(proc, "genes")


def test_demo_help(capsys):
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: regdecoder demo")
    assert "--n-train" in out and "--out" in out


def test_python_m_demo_help_names_itself():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "regdecoder.demo", "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m regdecoder.demo")


# ------------------------------------------------------------------ in process


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


def test_demo_module_options_have_help():
    import argparse

    from regdecoder import demo

    parser = demo.add_arguments(argparse.ArgumentParser())
    for action in parser._actions:
        assert action.help, action.option_strings


def test_main_returns_codes_instead_of_exiting(files, capsys):
    assert cli.main(["--version"]) == 0
    assert rd.__version__ in capsys.readouterr().out
    assert cli.main(["fit"]) == 2
    assert cli.main(["fit", str(files / "in.h5ad"), "--net", str(files / "net.tsv"), "--out", "x.h5ad",
                     "--n-threads", "0"]) == 2  # fmt: skip


@pytest.fixture
def quiet_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_use_raw_reads_raw(files, tmp_path, quiet_threads):
    adata = ad.read_h5ad(files / "in.h5ad")
    adata.layers["expr"] = adata.X.copy()
    adata.raw = adata.copy()
    adata.X = np.zeros_like(adata.X)  # e.g. scaled data; the fit must not read it
    adata.write_h5ad(tmp_path / "raw.h5ad")
    common = ["--net", str(files / "net.tsv"), "-q", "--n-threads", "1"]
    assert cli.main(["fit", str(tmp_path / "raw.h5ad"), "--out", str(tmp_path / "a.h5ad"), "--use-raw", *common]) == 0
    assert cli.main(["fit", str(tmp_path / "raw.h5ad"), "--out", str(tmp_path / "b.h5ad"), "--layer", "expr",
                     *common]) == 0  # fmt: skip
    a, b = ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(tmp_path / "b.h5ad")
    np.testing.assert_array_equal(a.obsm["regdecoder"], b.obsm["regdecoder"])
    assert a.raw is not None and (a.X == 0).all()  # the input is written back unchanged
    assert a.uns["regdecoder"]["params"]["use_raw"]


def test_use_raw_is_passed_on_when_the_core_accepts_it(files, tmp_path, monkeypatch):
    calls = {}

    def fit_decoder(adata, *, net, tmin=5, seed=0, key_added="regdecoder", device="auto", progress=True,
                    use_raw=False, gene_likelihood="mse"):  # fmt: skip
        """A stand-in with the future use_raw= parameter."""
        calls["use_raw"] = use_raw
        calls["n_vars"] = adata.n_vars
        adata.obsm[key_added] = np.zeros((adata.n_obs, 2), dtype=np.float32)
        adata.uns[key_added] = {}

    adata = ad.read_h5ad(files / "in.h5ad")
    adata.raw = adata.copy()
    adata = adata[:, :30].copy()  # X has fewer genes than raw
    adata.write_h5ad(tmp_path / "raw.h5ad")
    monkeypatch.setattr(rd.tl, "fit_decoder", fit_decoder)
    code = cli.main(["fit", str(tmp_path / "raw.h5ad"), "--net", str(files / "net.tsv"), "--out",
                     str(tmp_path / "o.h5ad"), "--use-raw", "-q"])  # fmt: skip
    assert code == 0
    assert calls == {"use_raw": True, "n_vars": 30}  # the AnnData itself, with use_raw=True


def test_use_raw_without_raw_is_a_user_error(files, tmp_path, capsys):
    code = cli.main(["fit", str(files / "in.h5ad"), "--net", str(files / "net.tsv"), "--out",
                     str(tmp_path / "o.h5ad"), "--use-raw", "-q"])  # fmt: skip
    assert code == 1
    assert "has no .raw" in capsys.readouterr().err


def test_missing_layer_is_a_user_error(files, tmp_path, capsys):
    code = cli.main(["fit", str(files / "in.h5ad"), "--net", str(files / "net.tsv"), "--out",
                     str(tmp_path / "o.h5ad"), "--layer", "counts", "-q"])  # fmt: skip
    assert code == 1
    assert "--layer 'counts'" in capsys.readouterr().err


def test_tmin_and_key_added(files, tmp_path, quiet_threads):
    out = tmp_path / "o.h5ad"
    code = cli.main(["fit", str(files / "in.h5ad"), "--net", str(files / "net.tsv"), "--out", str(out),
                     "--tmin", "3", "--key-added", "acts", "-q", "--n-threads", "1"])  # fmt: skip
    assert code == 0
    fitted = ad.read_h5ad(out)
    assert fitted.uns["acts"]["params"]["tmin"] == 3
    assert "acts" in fitted.obsm


@pytest.mark.slow
def test_demo_command_runs_the_demo(tmp_path, quiet_threads):
    code = cli.main(["demo", "--out", str(tmp_path), "--n-train", "150", "--n-test", "20", "--n-genes", "80",
                     "--n-tfs", "5", "--density", "0.3"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "test.h5ad").is_file()


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["regdecoder"] == "regdecoder.cli:main"


def test_negative_seed_is_one_error_line(files, tmp_path):
    proc = run("fit", files / "in.h5ad", "--net", files / "net.tsv", "--out", tmp_path / "o.h5ad", "--seed", "-3")
    assert_user_error(proc, "seed", "-3")
