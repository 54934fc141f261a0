"""Fuzzing what users hand to s2diff (issue 6): case files, baseline files,
results files and command-line values.

The property, for every input: the command works (exit 0, or 1 where its
answer is "no"), or it exits 2 with exactly one line on stderr
(``s2diff: error: ...``) -- never a traceback, never exit 3 ("internal
error").  The command line runs in this process through harness.cli.main
with stdout and stderr redirected to StringIO (not capsys: Hypothesis runs
many examples per test, and a lone surrogate, as a command line can carry,
must not trip the capture).  ``run`` is only driven down the paths that fail
before QEMU starts: its --out is always below a regular file.

Strategies are kept here, beside the inputs they fuzz (tests/strategies.py
holds those of the reference model).  How they shrink: JSON values towards
null and small scalars, mutation lists towards one mutation of the first
path of the document (its root), text edits towards deleting the first
line, option lists towards fewer options with the first allowed value.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import io
import json
import re
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.workers import case_file_name

ROOT = Path(__file__).resolve().parent.parent
SEED_CASE = ROOT / "tests" / "baseline" / "at-sets-dirty-state.json"
BASELINE = ROOT / "baseline.toml"

# Example counts come from the profile (conftest.py: dev 30, ci 300,
# nightly 3000); each example writes a file and runs a command.
FUZZ = settings(deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------
# Running the command line
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str


def s2diff(*argv: object) -> Cli:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Cli(code, out.getvalue(), err.getvalue())


def assert_works_or_one_line(r: Cli, ok: tuple[int, ...] = (0,)) -> None:
    """Exit ``ok`` or 2 with one ``s2diff: error:`` line; no traceback."""
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    if r.code == 2:
        lines = r.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("s2diff: error: "), r.err
    else:
        assert r.code in ok, (r.code, r.err)


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory per example (tmp_path is one per test)."""
    with tempfile.TemporaryDirectory(prefix="s2diff-fuzz-") as d:
        yield Path(d)


class HugeNumber:
    """Stands for a JSON number of 5000 digits, more than Python's int()
    reads by default.  Kept symbolic until written: Hypothesis repr()s what
    it draws, and repr() of such an int raises."""

    digits = 5000

    def __repr__(self) -> str:
        return f"<{self.digits}-digit number>"


HUGE = HugeNumber()


def to_json(data: Any) -> str:
    """json.dumps, writing each HugeNumber as its digits."""
    placeholder = "<huge number>"
    text = json.dumps(data, default=lambda o: placeholder)
    return text.replace(json.dumps(placeholder), "9" * HugeNumber.digits)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(to_json(data), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Case files
# ---------------------------------------------------------------------------

def seed_case() -> dict[str, Any]:
    """A valid case file, made small: three probes, no recorded outcomes,
    observation or divergence (readers ignore and recompute those)."""
    data = json.loads(SEED_CASE.read_text(encoding="utf-8"))
    for key in ("observed", "qemu", "divergence", "fanout"):
        data.pop(key, None)
    data["probes"] = [{k: p[k] for k in ("ipa", "at", "aim")} for p in data["probes"][:3]]
    return data


SEED = seed_case()

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)

# Values a field of a case file must refuse, one way or another.
HOSTILE = st.sampled_from([
    -1, -(1 << 63), 1 << 64, 1 << 200, HUGE, 1.5, float("inf"), True, None, "", [], {},
    "0x", "-0x10", "0x" + "f" * 40, "1e10", " 0x10", "0x1_0", "12abc", "0x" + "0" * 5000,
    "!!!not base64!!!", "AAA", "AAAAAAA=", "__import__('os').system('false')",
    "../../../../tmp/s2diff-escape", "/etc/passwd", "\x00", "\udcff",
])


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path (keys and indexes) into a JSON document, root first."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


SEED_PATHS = list(paths(SEED))[1:]


def set_at(doc: Any, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def delete_at(doc: Any, path: tuple) -> None:
    for step in path[:-1]:
        doc = doc[step]
    del doc[path[-1]]


@st.composite
def mutated_cases(draw) -> dict[str, Any]:
    """The seed case with 1-3 mutations: a field deleted, or given a random
    JSON value or a hostile one; a region duplicated to overlap another."""
    doc = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "hostile", "delete", "overlap"]))
        live = list(paths(doc))[1:]
        path = draw(st.sampled_from(live)) if live else ()
        if kind == "overlap":
            image = doc.get("image")
            regions = image.get("regions") if isinstance(image, dict) else None
            if isinstance(regions, list) and regions and isinstance(regions[0], dict):
                twin = dict(regions[0])
                if isinstance(twin.get("pa"), str) and twin["pa"].startswith("0x"):
                    twin["pa"] = hex(int(twin["pa"], 16) + 8 * draw(st.integers(0, 4)))
                regions.append(twin)
        elif not path:
            doc = draw(json_values)
        elif kind == "delete":
            delete_at(doc, path)
        else:
            set_at(doc, path, draw(json_values if kind == "replace" else HOSTILE))
        if not isinstance(doc, dict):
            break
    return doc


class TestCaseFiles:

    def test_the_seed_is_a_valid_case(self, tmp_path):
        """Control: unmutated, the seed walks (so mutations are what fails)."""
        r = s2diff("walk", write_json(tmp_path / "case.json", SEED))
        assert r.code == 0, r.err
        assert r.out.count("probe ") == 3

    @FUZZ
    @given(mutated_cases())
    @example({**SEED, "version": 2})
    @example({**SEED, "format": "s2diff-baseline"})
    @example({**SEED, "config": {**SEED["config"], "vtcr": HUGE}})
    @example({**SEED, "config": {**SEED["config"], "vttbr": "-0x1000"}})
    @example({**SEED, "probes": [{"ipa": "0x" + "f" * 17, "at": "S12E1R"}]})
    @example({**SEED, "image": {**SEED["image"], "regions": [{"pa": "0x40000000",
                                                               "data": "!!"}]}})
    @example({**SEED, "image": {**SEED["image"], "regions": SEED["image"]["regions"] * 2}})
    @example({**SEED, "memory": {"ram": [["0x0", "0x" + "f" * 13]], "empty": []}})
    def test_mutated_case_file(self, doc):
        """Any mutation of a valid case file walks or is refused in one line."""
        with scratch() as d:
            assert_works_or_one_line(s2diff("walk", write_json(d / "case.json", doc)))

    @FUZZ
    @given(json_values)
    def test_random_json(self, doc):
        """A JSON document that is not a case file is refused in one line."""
        with scratch() as d:
            r = s2diff("walk", write_json(d / "case.json", doc))
        assert r.code == 2
        assert_works_or_one_line(r)

    @FUZZ
    @given(st.binary(max_size=200))
    @example(b"\xff\xfe{}")
    @example(b'{"format": "s2diff-case", "version": 1' )
    @example(b"{" * 100000)
    @example(b'{"a": ' + b"9" * 5000 + b"}")
    def test_random_bytes(self, blob):
        """Bytes that are not a case file (binary, torn, too deep, a number
        longer than Python parses by default) are refused in one line."""
        with scratch() as d:
            (d / "case.json").write_bytes(blob)
            r = s2diff("walk", d / "case.json")
        assert r.code == 2
        assert_works_or_one_line(r)

    @pytest.mark.parametrize("where", ["missing", "directory", "in-missing-directory"])
    def test_no_case_file(self, tmp_path, where):
        path = {"missing": tmp_path / "nope.json", "directory": tmp_path,
                "in-missing-directory": tmp_path / "sub" / "case.json"}[where]
        r = s2diff("walk", path)
        assert r.code == 2
        assert_works_or_one_line(r)

    @FUZZ
    @given(st.lists(st.integers(-5, 10) | st.text(max_size=4), min_size=1, max_size=3))
    def test_walk_probe_numbers(self, numbers):
        """--probe N: a probe of the case, or one line saying which exist."""
        with scratch() as d:
            case = write_json(d / "case.json", SEED)
            argv = ["walk", case]
            for n in numbers:
                argv += ["--probe", n]
            assert_works_or_one_line(s2diff(*argv))


# ---------------------------------------------------------------------------
# Baseline files (through `run`, which validates one before starting)
# ---------------------------------------------------------------------------

BASELINE_TEXT = BASELINE.read_text(encoding="utf-8")
BASELINE_LINES = BASELINE_TEXT.splitlines(keepends=True)


@st.composite
def mutated_baselines(draw) -> str:
    """baseline.toml with 1-3 line edits: a line deleted, duplicated,
    truncated, or its value replaced by random or hostile TOML text."""
    lines = list(BASELINE_LINES)
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "truncate", "value", "hostile"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "truncate":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        else:
            key = lines[i].split("=", 1)[0] if "=" in lines[i] else draw(st.sampled_from(
                ["id", "version", "kind", "cpus", "expected", "unknown_key"]))
            value = draw(st.text(max_size=12) if kind == "value" else st.sampled_from([
                '"("', '"[a-"', "[1, 2]", "1979-05-27", "inf", "10" + "0" * 5000, '"""',
                "{ a = 1 }", '["cortex-a57", 3]', "true", '"qemu-7.2-block-at-invalid-level"',
                "2", '""', "-1"]))
            lines[i] = f"{key.strip() or 'x'} = {value}\n"
    return "".join(lines)


class TestBaselineFiles:

    def run_with(self, d: Path, text: str | bytes) -> Cli:
        path = d / "baseline.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        blocker = d / "file"
        blocker.write_text("")
        return s2diff("run", "--cpu", "cortex-a57", "--cases", "1", "--baseline", path,
                      "--out", blocker / "out")

    def test_the_seed_is_a_valid_baseline(self, tmp_path):
        """Control: baseline.toml passes, so `run` gets as far as --out."""
        r = self.run_with(tmp_path, BASELINE_TEXT)
        assert r.code == 2 and "--out: cannot write" in r.err, r.err

    @FUZZ
    @given(mutated_baselines())
    @example(BASELINE_TEXT.replace("version = 1", "version = 2"))
    @example(BASELINE_TEXT.replace("version = 1", "version = 1" + "0" * 5000))
    @example(BASELINE_TEXT + BASELINE_TEXT[BASELINE_TEXT.index("[[divergence]]"):])
    @example(BASELINE_TEXT.replace('expected = "', 'expected = "(', 1))
    @example(BASELINE_TEXT.replace('cpus = [', 'cpus = [3, ', 1))
    @example(BASELINE_TEXT.replace("[[divergence]]", "[divergence]", 1))
    @example(BASELINE_TEXT + 'evil = "__import__(\'os\')"\n')
    def test_mutated_baseline(self, text):
        """Any edit of baseline.toml passes or is refused in one line naming
        the file; `run` never gets past --out either way."""
        with scratch() as d:
            r = self.run_with(d, text)
        assert_works_or_one_line(r)
        assert r.code == 2
        assert "--out: cannot write" in r.err or "baseline.toml" in r.err, r.err

    @FUZZ
    @given(st.text(max_size=300) | st.binary(max_size=300))
    def test_random_text(self, text):
        with scratch() as d:
            r = self.run_with(d, text)
        assert_works_or_one_line(r)
        assert r.code == 2


# ---------------------------------------------------------------------------
# Results files (`report` rebuilds the reports from whatever it can read)
# ---------------------------------------------------------------------------

RESULTS_SEED = [
    {"type": "run", "version": 1, "seed": 1, "cases_per_entry": 1, "shard": None,
     "entries": 1, "batches": 1, "cases": 1, "argv": ["s2diff", "run"],
     "qemu": {"aarch64": "QEMU emulator version 7.2.22"}},
    {"type": "case", "key": "aarch64/cortex-a57/4k/ipa40/sl0-1/L1x2-kvm#0",
     "entry": "aarch64/cortex-a57/4k/ipa40/sl0-1/L1x2-kvm", "group": "aarch64 4k",
     "arch": "aarch64", "cpu": "cortex-a57", "vtcr": "0x80043558", "vttbr": "0x0",
     "valid": True, "kvm": True, "batch": 0, "status": "diverge", "probes": 2, "passed": 1,
     "diverged": 1, "not_run": 0},
    {"type": "divergence", "kind": "probe", "key": "aarch64/cortex-a57/4k/ipa40/sl0-1/L1x2-kvm#0",
     "entry": "aarch64/cortex-a57/4k/ipa40/sl0-1/L1x2-kvm", "group": "aarch64 4k", "batch": 0,
     "probe": 1, "ipa": "0x40000000", "at": "S12E1R", "aim": "block where no block",
     "arch": "aarch64", "cpu": "cortex-a57", "granule": "4k", "config": "T0SZ=24",
     "vtcr": "0x80043558", "vttbr": "0x0", "expected": ["translation L1"],
     "permitted": [{"result": "translation fault L1", "rules": ["no block at level"],
                    "trace": ["L1 [0x48000008] = 0x1"]}],
     "observed": "ok", "observed_text": "PAR 0x12b00", "raw": {"par": "0x12b00"},
     "qemu_version": "QEMU emulator version 7.2.22", "argv": ["qemu-system-aarch64"],
     "known": None, "case_file": "cases/x.json"},
    {"type": "batch", "batch": 0, "arch": "aarch64", "cpu": "cortex-a57",
     "status": "completed", "images": 1, "images_done": 1, "elapsed": 0.1,
     "argv": ["qemu-system-aarch64"], "qemu_version": "QEMU emulator version 7.2.22",
     "diagnostic": ""},
]


def results_text(records: list) -> str:
    return "".join(to_json(r) + "\n" for r in records)


@st.composite
def mutated_results(draw) -> str:
    """RESULTS_SEED with 1-3 mutations of its records (a field deleted or
    given a random or hostile value), then perhaps a line-level one: the
    last line torn, a garbage line, a record repeated."""
    records = copy.deepcopy(RESULTS_SEED)
    for _ in range(draw(st.integers(1, 3))):
        rec = draw(st.sampled_from(records))
        key = draw(st.sampled_from(sorted(rec)))
        if draw(st.booleans()):
            del rec[key]
        else:
            rec[key] = draw(json_values | HOSTILE.filter(lambda v: v != "\udcff"))
    text = results_text(records)
    edit = draw(st.sampled_from(["none", "torn", "garbage", "repeat"]))
    if edit == "torn":
        text = text[:draw(st.integers(0, len(text) - 1))]
    elif edit == "garbage":
        text += draw(st.text(max_size=30)) + "\n"
    elif edit == "repeat":
        text += text
    return text


class TestResultsFiles:

    def test_the_seed_reports(self, tmp_path):
        (tmp_path / "results.jsonl").write_text(results_text(RESULTS_SEED))
        r = s2diff("report", tmp_path)
        assert r.code == 1, r.err       # its one divergence is new

    @FUZZ
    @given(mutated_results())
    def test_mutated_results_file(self, text):
        """A damaged results file is reported on (exit 0, 1: a new
        divergence) or refused in one line."""
        with scratch() as d:
            (d / "results.jsonl").write_text(text, encoding="utf-8")
            assert_works_or_one_line(s2diff("report", d), ok=(0, 1))

    def test_a_lone_surrogate_in_a_record(self, tmp_path):
        text = results_text(RESULTS_SEED).replace("PAR 0x12b00", "PAR\\udcff")
        (tmp_path / "results.jsonl").write_text(text, encoding="utf-8")
        assert_works_or_one_line(s2diff("report", tmp_path), ok=(0, 1))


# ---------------------------------------------------------------------------
# Command-line values
# ---------------------------------------------------------------------------

CPU_NAMES = ["cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "cortex-a35",
             "neoverse-n1", "max", "cortex-a15", "cortex-a7"]
# Text as a command line carries it: no NUL; undecodable bytes arrive as
# lone surrogates (os.fsdecode).
arg_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
                   | st.sampled_from(["\udcff", "\udc80"]), max_size=12)
number_text = st.one_of(st.integers(-3, 70).map(str), st.sampled_from(
    ["", "0", "1e3", "nan", "inf", "-inf", "0x10", "1_000", "٣", " 4", "99999999999999999999"]))
hex_text = st.one_of(st.integers(-1, 1 << 66).map(hex), st.sampled_from(
    ["", "0x", "xyz", "0x8002_3558", "-0x1", "0x" + "f" * 30, "80023558", "0X1F"]))
cpu_list = st.lists(st.sampled_from(CPU_NAMES) | arg_text, min_size=1, max_size=3).map(",".join)

OPTION_VALUES = {
    "--arch": st.sampled_from(["aarch64", "arm"]) | arg_text,
    "--cpu": cpu_list,
    "--ipa": st.lists(number_text, min_size=1, max_size=3).map(",".join),
    "--granule": st.lists(st.sampled_from(["4k", "16k", "64k", "4K", "8k", ""]) | arg_text,
                          min_size=1, max_size=3).map(",".join),
    "--vtcr": hex_text,
    "--vttbr": hex_text,
}
RUN_VALUES = {
    **{k: v for k, v in OPTION_VALUES.items() if k != "--vttbr"},
    "--shard": st.one_of(st.tuples(st.integers(-1, 5), st.integers(-1, 5)).map(
        lambda t: f"{t[0]}/{t[1]}"), arg_text, st.sampled_from(["1/1", "2/3", "1/", "/2", "1/2/3"])),
    "--cases": number_text,
    "--jobs": number_text,
    "--seed": number_text,
    "--budget": number_text,
    "--fanout": number_text,
}


def options(values: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[list[str]]:
    """A few options of ``values`` each with a drawn value, as argv."""
    pair = st.sampled_from(sorted(values)).flatmap(
        lambda name: values[name].map(lambda v: [name, v]))
    return st.lists(pair, max_size=4).map(lambda ps: [x for p in ps for x in p])


class TestCommandLine:

    @FUZZ
    @given(options(OPTION_VALUES), st.booleans())
    @example(["--vtcr", "0x" + "f" * 30], False)
    @example(["--ipa", "52", "--cpu", "cortex-a53"], False)
    @example(["--granule", "16k", "--cpu", "cortex-a57"], True)
    @example(["--arch", "arm", "--vtcr", "0x1_0000_0000"], False)
    def test_configs(self, argv, as_json):
        """`configs` lists, judges (exit 1: invalid) or refuses in one line."""
        r = s2diff("configs", *argv, *(["--json"] if as_json else []))
        assert_works_or_one_line(r, ok=(0, 1))

    @FUZZ
    @given(options(RUN_VALUES))
    @example(["--shard", "0/3"])
    @example(["--cases", "0"])
    @example(["--jobs", "-2"])
    @example(["--budget", "nan"])
    @example(["--fanout", "-1"])
    @example(["--cpu", "cortex-a99"])
    @example(["--cpu", "cortex-a53,cortex-a57", "--vtcr", "0x80023558"])
    @example(["--ipa", "52", "--cpu", "cortex-a53"])
    def test_run(self, argv):
        """`run` with any values refuses in one line before QEMU starts: a
        bad value, or else the unwritable --out."""
        with scratch() as d:
            (d / "file").write_text("")
            r = s2diff("run", "--cpu", "cortex-a57", *argv, "--no-baseline",
                       "--out", d / "file" / "out")
        assert r.code == 2
        assert_works_or_one_line(r)

    @pytest.mark.parametrize("argv", [
        ["--budget", "nan"], ["--budget", "-inf"], ["--budget", "0"], ["--fanout", "-1"], ["--jobs", "0"],
        ["--cases", "-3"], ["--shard", "3/2"],
    ])
    def test_run_names_the_bad_value(self, tmp_path, argv):
        """A bad value is what the line names, not the --out after it."""
        (tmp_path / "file").write_text("")
        r = s2diff("run", "--cpu", "cortex-a57", *argv, "--out", tmp_path / "file" / "out")
        assert r.code == 2
        assert_works_or_one_line(r)
        assert argv[0] in r.err and "--out" not in r.err, r.err

    @FUZZ
    @given(st.lists(arg_text, max_size=4))
    def test_any_words(self, words):
        """Any words after `s2diff` (offline commands: nothing runs QEMU)."""
        command = words[:1] if words[:1] in (["configs"], ["walk"], ["report"]) else ["configs"]
        assert_works_or_one_line(s2diff(*command, *words[1:]), ok=(0, 1))


# ---------------------------------------------------------------------------
# Safety: inputs are data, and cannot make s2diff write outside its output
# ---------------------------------------------------------------------------

class TestSafety:

    @FUZZ
    @given(st.text(max_size=200))
    @example("../../../../etc/passwd")
    @example("/abs/path#1")
    @example("..")
    @example("")
    @example("__import__('os').system('touch /tmp/pwned')#0")
    @example("aarch64/cortex-a57/4k/ipa40/sl0-2/L0x1#3")
    @example("é٣／\u2024#1")
    def test_case_file_name_stays_in_its_folder(self, key):
        """Any key names a plain file, of ASCII letters, digits, '.', '_'
        and '-', directly inside the cases folder, that can be created."""
        name = case_file_name(key)
        assert re.fullmatch(r"[A-Za-z0-9._-]*\.json", name), name
        with scratch() as d:
            target = d / name
            assert target.resolve().parent == d.resolve()
            target.write_text("{}")
            assert [p.name for p in d.iterdir()] == [name]

    def test_a_hostile_case_file_writes_nothing(self, tmp_path, monkeypatch):
        """A case file whose keys and values look like code or paths is
        data: walking it writes no file anywhere under the scratch tree."""
        doc = {**SEED, "key": "../../../../tmp/escape#0", "__import__": "os",
               "__class__": {"__init__": "x"}, "!!python/object": "os.system",
               "probes": [{**p, "aim": "'; rm -rf / #"} for p in SEED["probes"]]}
        case = write_json(tmp_path / "case.json", doc)
        monkeypatch.chdir(tmp_path)
        before = sorted(tmp_path.rglob("*"))
        r = s2diff("walk", case)
        assert r.code == 0, r.err
        assert sorted(tmp_path.rglob("*")) == before

    def test_a_hostile_results_file_writes_only_the_reports(self, tmp_path):
        """`report` on records naming paths outside the run writes its
        three reports in the run directory and nothing else."""
        run = tmp_path / "deep" / "run"
        run.mkdir(parents=True)
        records = copy.deepcopy(RESULTS_SEED)
        for rec in records[1:3]:      # the case and its divergence
            rec.update(key="../../../../escape#0", entry="../../escape", group="/etc")
        records[2]["case_file"] = "../../../../tmp/escape.json"
        records[3]["cpu"] = "../../../x"
        (run / "results.jsonl").write_text(results_text(records))
        before = sorted(tmp_path.rglob("*"))
        r = s2diff("report", run)
        assert r.code == 1, r.err
        new = sorted(set(tmp_path.rglob("*")) - set(before))
        assert new == sorted(run / n for n in ("junit.xml", "report.html", "summary.txt"))

    def test_inputs_are_never_executed(self):
        """No module of s2diff calls eval, exec or compile, or loads pickle,
        marshal or shelve data: case, baseline and results files are read
        with json and tomllib only."""
        banned_calls = {"eval", "exec", "compile", "__import__"}
        banned_modules = {"pickle", "marshal", "shelve", "dill", "yaml"}
        found = []
        for path in sorted((ROOT / "harness").glob("*.py")) + sorted((ROOT / "reference").glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                        and node.func.id in banned_calls:
                    found.append(f"{path.name}:{node.lineno} {node.func.id}()")
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                        else [node.module or ""]
                    found += [f"{path.name}:{node.lineno} import {n}" for n in names
                              if n.split(".")[0] in banned_modules]
        assert found == []
