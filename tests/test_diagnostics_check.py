"""``descentlab check -- python train.py``: an unmodified script, every optimizer guarded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from descentlab.diagnostics import protocol
from descentlab.diagnostics.check import SITE, attach_everywhere, summary

ROOT = Path(__file__).resolve().parent.parent

PLANTED = """
import sys, torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01)  # L2 in Adam
x, y = torch.randn(32, 4), torch.randn(32, 1)
for step in range(5):
    torch.nn.functional.mse_loss(model(x), y).backward()  # never zeroed
    opt.step()
print("trained")
sys.exit(3)
"""

CLEAN = """
import torch
import descentlab
import descentlab.torch as optim
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
opts = [
    torch.optim.AdamW(descentlab.param_groups_for_decay(model, 0.01), lr=1e-3),
    optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
]
x, y = torch.randn(32, 4), torch.randn(32, 1)
for opt in opts:
    for step in range(5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
print("trained")
"""


def _check(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "descentlab", "check", "--", *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def test_a_planted_pitfall_is_reported_and_the_exit_code_passed_through(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(PLANTED)
    proc = _check(tmp_path, sys.executable, "train.py")
    assert proc.returncode == 3  # the script's own exit code
    assert "trained" in proc.stdout  # the script ran unchanged
    summary = proc.stderr[proc.stderr.index("descentlab check: exit code 3") :]
    assert "optimizers guarded: Adam" in summary
    for kind in ("coupled_weight_decay", "grad_accumulation", "decay_on_bias_or_norm"):
        assert f"] {kind} (step" in summary, kind
    assert "fix: call optimizer.zero_grad()" in summary and "use AdamW" in summary


def test_a_clean_script_has_no_finding(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(CLEAN)
    proc = _check(tmp_path, sys.executable, "train.py")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "optimizers guarded: AdamW, SGD" in proc.stderr
    assert "no pitfall found" in proc.stderr and "PitfallWarning" not in proc.stderr


FINETUNED = """
import torch
torch.manual_seed(1)
model = torch.nn.Sequential(torch.nn.Linear(4, 300), torch.nn.Linear(300, 300))
model.load_state_dict(torch.load("pretrained.pt"))  # a checkpoint from another process
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
for step in range(3):
    opt.zero_grad()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
"""


def test_adams_default_lr_on_loaded_pretrained_weights_is_reported(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    pretrained = torch.nn.Sequential(torch.nn.Linear(4, 300), torch.nn.Linear(300, 300))
    with torch.no_grad():
        for p in pretrained.parameters():
            p.normal_(0, 0.02)  # the scale of pretrained transformer weights
    torch.save(pretrained.state_dict(), tmp_path / "pretrained.pt")
    (tmp_path / "train.py").write_text(FINETUNED)
    proc = _check(tmp_path, sys.executable, "train.py")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "] finetuning_lr (step 0): group 0, param 2, shape (300, 300)" in proc.stderr, (
        proc.stderr
    )
    assert "loaded by load_state_dict as 1.weight" in proc.stderr
    (tmp_path / "scratch.py").write_text(FINETUNED.replace("model.load_state_dict", "print"))
    proc = _check(tmp_path, sys.executable, "scratch.py")
    assert "no pitfall found" in proc.stderr, proc.stderr[-1500:]  # the same steps from scratch


def test_finetuning_watches_every_weight_tensor(tmp_path: Path) -> None:
    """AdamW at lr 3e-2 on fresh layers: reported only with --finetuning (which says the
    weights are learned)."""
    script = CLEAN.replace("0.01), lr=1e-3)", "0.01), lr=3e-2)")
    assert script != CLEAN
    (tmp_path / "train.py").write_text(script)
    plain = _check(tmp_path, sys.executable, "train.py")
    assert "no pitfall found" in plain.stderr, plain.stderr[-1500:]
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "check", "--finetuning", "--",
         sys.executable, "train.py"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "] finetuning_lr (step 0): group 0, param " in proc.stderr
    assert "||dw||/||w|| = " in proc.stderr and "(finetuning=True)" in proc.stderr
    assert "fix: lower the lr for the learned weights (fine-tuning: 1e-5..1e-4" in proc.stderr


@pytest.mark.parametrize(
    ("command", "message"),
    [([], "give the command to run after --"), (["no-such-program-x"], "cannot run")],
)
def test_a_bad_command_is_one_line_and_exit_2(
    tmp_path: Path, command: list[str], message: str
) -> None:
    proc = _check(tmp_path, *command)
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_the_environments_own_sitecustomize_still_runs(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITE'] = 'ran'\n")
    (tmp_path / "train.py").write_text(
        "import os\nprint('own:', os.environ.get('OWN_SITE'))\n" + CLEAN
    )
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "check", "--", sys.executable, "train.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(own)},
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "own: ran" in proc.stdout
    assert "Error in sitecustomize" not in proc.stderr and "no pitfall found" in proc.stderr


# -- the protocol, shared by the command and the start-up hook --------------------------------


def test_the_hook_lives_where_the_command_points_and_reads_the_protocol() -> None:
    hook = SITE / "sitecustomize.py"
    assert hook.is_file() and SITE.name == protocol.SITE_FOLDER
    text = hook.read_text()
    assert "protocol.REPORT_ENV" in text and "protocol.watch_every_tensor" in text
    assert "DESCENTLAB_" not in text  # no name of the protocol written a second time


def test_the_hook_imports_nothing_heavy_without_a_report() -> None:
    """A process that inherits the hook's folder but no report is neither slowed down nor
    changed: neither torch nor descentlab is imported."""
    env = {k: v for k, v in os.environ.items() if k != protocol.REPORT_ENV}
    env["PYTHONPATH"] = str(SITE)
    code = "import sys; print(sorted({'torch', 'descentlab'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-1500:]
    assert proc.stderr == ""


def test_summary_reads_what_the_child_writes(tmp_path: Path) -> None:
    report = str(tmp_path / "report.jsonl")
    protocol.append(report, protocol.attached_entry("SGD", "7:1"))
    finding = {"kind": "lr_jump", "param": "group 0", "step": 2, "detail": "d", "fix": "f"}
    protocol.append(report, protocol.finding_entry(finding, "SGD", "7:1"))
    with open(report, "a") as fh:
        fh.write('{"kind": "cut sh')  # a child killed mid-line
    entries = protocol.parse_report(Path(report).read_text())
    assert summary(entries, 0).splitlines() == [
        "descentlab check: exit code 0; optimizers guarded: SGD",
        "  1 finding(s):",
        "  - [SGD] lr_jump (step 2): group 0: d; fix: f",
    ]


def test_one_problem_on_many_optimizers_is_one_line_naming_them() -> None:
    entries: list[dict[str, object]] = []
    finding = {"kind": "coupled_weight_decay", "param": "group 0", "step": 0, "detail": "d"}
    for n in range(1, 21):
        entries.append(protocol.attached_entry("Adam", f"9:{n}"))
        if n != 5:
            entries.append(protocol.finding_entry({**finding, "fix": "f"}, "Adam", f"9:{n}"))
        advice = {**finding, "kind": "decay_on_bias_or_norm", "fix": "g", "advice": True}
        entries.append(protocol.finding_entry(advice, "Adam", f"9:{n}"))
    entries.append(protocol.attached_entry("SGD", "10:1"))  # another process
    assert summary(entries, 0).splitlines() == [
        "descentlab check: exit code 0; optimizers guarded: Adam x20, SGD",
        "  1 finding(s):",
        "  - [Adam #1-#4, #6-#20] coupled_weight_decay (step 0): group 0: d; fix: f",
        "  advice (not a pitfall):",
        "  - [Adam #1-#20] decay_on_bias_or_norm (step 0): group 0: d; fix: g",
    ]


# -- the lab's own workloads ------------------------------------------------------------------


def test_lab_workloads_produce_no_finding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every built-in workload, every default optimizer, every lr of its default grid (the
    largest included), trained by the lab's own runner with every optimizer guarded."""
    from descentlab.lab.compare import DEFAULT_OPTIMIZERS, default_lrs
    from descentlab.lab.runner import run_one
    from descentlab.lab.spec import parse_optimizer, parse_regime
    from descentlab.lab.training import RunSpec
    from descentlab.lab.workloads import WORKLOADS

    report = tmp_path / "findings.jsonl"
    hook = attach_everywhere(report)
    runs = 0
    try:
        for name, workload in WORKLOADS.items():
            for text in DEFAULT_OPTIMIZERS:
                opt = parse_optimizer(text)
                for lr in default_lrs(workload, opt):
                    spec = RunSpec(name, opt, lr, 0, parse_regime("minibatch:32"), 4, 4)
                    run_one(spec, workload.build)
                    runs += 1
    finally:
        hook.remove()
    lines = report.read_text().splitlines()
    assert sum('"attached"' in line for line in lines) == runs > 100
    assert [line for line in lines if '"kind"' in line] == []


@pytest.mark.parametrize(("signal_name", "status"), [("SIGKILL", 137), ("SIGTERM", 143)])
def test_a_script_killed_by_a_signal_exits_as_a_shell_reports_it(
    tmp_path: Path, signal_name: str, status: int
) -> None:
    (tmp_path / "die.py").write_text(
        f"import os, signal\nos.kill(os.getpid(), signal.{signal_name})\n"
    )
    proc = _check(tmp_path, sys.executable, "die.py")
    assert proc.returncode == status
    assert f"descentlab check: exit code {status} (killed by {signal_name})" in proc.stderr


def test_a_file_that_is_not_executable_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(PLANTED)
    proc = _check(tmp_path, "./train.py")
    assert proc.returncode == 2
    assert "cannot run './train.py': permission denied" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_warnings_as_errors_in_the_script_do_not_turn_a_finding_into_a_crash(
    tmp_path: Path,
) -> None:
    """``python -W error train.py``: the guard reports at the end; it raises nothing in the
    user's process (its findings are not warnings there)."""
    (tmp_path / "train.py").write_text(PLANTED)
    proc = _check(tmp_path, sys.executable, "-W", "error", "train.py")
    assert proc.returncode == 3, proc.stderr  # the script's own exit, not a PitfallWarning
    assert "trained" in proc.stdout and "PitfallWarning" not in proc.stderr
    assert "] grad_accumulation (step" in proc.stderr


def test_guarding_every_optimizer_keeps_none_alive() -> None:
    """A sweep builds model after model under check: each optimizer the script drops, its
    model and its tensors are freed at once, by reference counting, as without the guard
    (the guard refers to its optimizer weakly: a cycle would hold them until the garbage
    collector runs, and a sweep of 20 models grew from 0.5 to 1.2 GB). Telemetry likewise."""
    import gc
    import weakref

    import torch

    from descentlab import telemetry

    handle = attach_everywhere(os.devnull)
    refs = []
    torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())  # torch holds a process's first
    gc.collect()  # optimizer in a cycle of its own until a collection: not the guard's doing
    gc.disable()
    try:
        for k in range(20):
            model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 1))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            if k % 2:
                telemetry(opt, model, every=1)
            for _ in range(2):
                opt.zero_grad()
                model(torch.randn(8, 64)).square().mean().backward()
                opt.step()
            refs.append((weakref.ref(opt), weakref.ref(model[0].weight)))
            del model, opt
        alive = [(o() is not None, w() is not None) for o, w in refs]
    finally:
        gc.enable()
        handle.remove()
    assert alive == [(False, False)] * 20


def test_a_python_that_skips_the_hook_gets_an_honest_summary(tmp_path: Path) -> None:
    """``python -E`` ignores PYTHONPATH: the guard never loads, and the summary says so
    rather than "no optimizer took a step" (steps ran)."""
    (tmp_path / "train.py").write_text(PLANTED)
    proc = _check(tmp_path, sys.executable, "-E", "train.py")
    assert proc.returncode == 3 and "trained" in proc.stdout
    assert "the guard did not load in the command's Python" in proc.stderr
    assert "no optimizer took a step" not in proc.stderr
    clean = tmp_path / "quiet.py"
    clean.write_text("import torch\nprint('no optimizer here')\n")
    proc = _check(tmp_path, sys.executable, "quiet.py")
    assert "no optimizer took a step" in proc.stderr
