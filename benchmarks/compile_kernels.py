"""Compile mvlift's GPU code for sm_90 and sm_80 without a GPU; print registers, spills and shared memory.

    python benchmarks/compile_kernels.py               # the CI set (what stage 2 and training run)
    python benchmarks/compile_kernels.py --set full    # every dtype, V = 2..MAX_VIEWS, more attention shapes
    python benchmarks/compile_kernels.py --json out.json --jobs 2 --arch 90

Triton kernels: each launcher of :mod:`mvlift.kernels` is called on small CPU tensors with the launch
parameters it uses on a GPU (block sizes, warps; for the cross-view attention every config that its
autotune prune keeps), the launch is captured instead of run, and the kernel is compiled by
``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`` with exactly the signature,
specialisation and options the JIT would use. Its PTX then goes through Triton's bundled ``ptxas -v`` with
the flags Triton itself passes. CUDA sources: every ``csrc/*/*_cuda.cu`` through ``nvcc -Xptxas -v`` with
the build's flags.

Rows marked *gated* are the configurations that stage 2 and training use (the epipolar loss at V <= 8 in
float32 / bfloat16, the line and stage-1 losses in float32 / bfloat16, every config the cross-view
attention's prune keeps for stage 4's shapes: K <= 8 views, head dim 64 or 128, bfloat16 / float32; the
CUDA sources): any spill there is a failure. The other rows are reported (a few bytes of spill in a kept
attention config of another shape leave the autotuner a choice; its timing decides). Every row fails on a
compile error, and a float64 kernel fails when its PTX holds an approximate float64 instruction
(``rsqrt.approx.f64`` and the like: float64 results must be exact to rounding). The exit status is 1 on any
failure.

Compiled kernels land in Triton's cache (``TRITON_CACHE_DIR``, default ``~/.triton/cache``) and the ptxas
reports in ``<cache>/mvlift_ptxas``, so a second run with unchanged kernels takes seconds.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "0"  # before triton or mvlift is imported: the compiled path's launchers
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import glob  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHS = (90, 80)
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp64": "float64"}
_PTXAS_RE = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "smem": re.compile(r"(\d+) bytes smem"),
}
_APPROX_F64 = re.compile(r"\b\w+\.approx(?:\.ftz)?\.f64\b")


# ----------------------------------------------------------------------------------------------- cases
@dataclasses.dataclass(frozen=True)
class Case:
    """One launcher call: ``group`` (epipolar, line, attention, cuda), a ``label`` for the table, whether
    its kernels are ``gated`` (no spill allowed) and the arguments that :func:`_capture_case` turns into
    kernel launches."""

    group: str
    label: str
    gated: bool
    params: tuple = ()


def triton_cases(which: str) -> list[Case]:
    """The Triton cases of the ``"ci"`` or ``"full"`` set."""
    from mvlift.ops.epipolar_loss import MAX_VIEWS

    full = which == "full"
    cases = []
    views = range(2, MAX_VIEWS + 1) if full else range(2, 9)
    dtypes = ("fp32", "bf16", "fp16", "fp64") if full else ("fp32", "bf16")
    for dt in dtypes:
        for v in views:
            gated = v <= 8 and dt in ("fp32", "bf16")
            cases.append(Case("epipolar", f"V={v} {dt} all pairs symmetric w+m", gated, (v, dt, "all", 0)))
    if not full:
        cases.append(Case("epipolar", "V=6 fp64 all pairs symmetric w+m", False, (6, "fp64", "all", 0)))
    if full:
        for v in (6, 8, MAX_VIEWS):
            cases.append(Case("epipolar", f"V={v} fp32 all pairs sampson w+m", v <= 8, (v, "fp32", "all", 1)))
        cases.append(Case("epipolar", "V=6 fp32 ring pairs symmetric w+m", True, (6, "fp32", "ring", 0)))
    for dt in ("fp32", "fp64"):
        cases.append(Case("reductions", f"{dt}", dt == "fp32", (dt,)))
    for dt in ("fp32", "bf16", "fp16", "fp64") if full else ("fp32", "bf16"):
        cases.append(Case("line", f"{dt} mask", dt in ("fp32", "bf16"), (dt,)))
    if full:
        shapes = [(k, d) for k in (2, 3, 4, 6, 8, 12, 16) for d in (32, 64, 128)]
        att_dtypes = ("bf16", "fp16", "fp32")
    else:  # stage 4: K = 4 (its default) .. 8 views, head dim 64 (cmu_gpu.yaml) or 128 (the paper's size)
        shapes = [(4, 64), (6, 64), (8, 64), (4, 128)]
        att_dtypes = ("bf16", "fp32")
    for dt in att_dtypes:
        for k, d in shapes:
            gated = k <= 8 and d in (64, 128) and dt in ("bf16", "fp32")
            cases.append(Case("attention", f"K={k} D={d} {dt}", gated, (k, d, dt)))
    return cases


def cuda_cases() -> list[Case]:
    """One case per CUDA source of the native extension."""
    return [
        Case("cuda", str(Path(p).relative_to(REPO / "csrc")), True, (p,))
        for p in sorted(glob.glob(str(REPO / "csrc" / "*" / "*_cuda.cu")))
    ]


# ----------------------------------------------------------------------------------------------- capture
@contextlib.contextmanager
def _captured_launches():
    """Within the block, ``kernel[grid](...)`` records ``(kernel, args, kwargs)`` instead of running."""
    from triton.runtime.jit import JITFunction

    records: list[tuple] = []
    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        records.append((self, args, kwargs))

    JITFunction.run = record
    try:
        yield records
    finally:
        JITFunction.run = original


def _capture_case(case: Case) -> list[tuple[str, object, tuple, dict]]:
    """``[(kernel label, JITFunction, args, kwargs), ...]`` of the launches that ``case`` makes on a GPU."""
    import torch

    out = []
    if case.group == "epipolar":
        from mvlift.kernels import epipolar_loss as E

        from mvlift.reference.losses import default_pairs

        v, dt, pair_kind, dist = case.params
        dtype = getattr(torch, DTYPES[dt])
        cd = torch.float64 if dtype == torch.float64 else torch.float32
        B, T, J = 64, 120, 18  # a stage-2 batch: B sequences, T frames, J joints
        x = torch.empty(B, v, T, J, 2, dtype=dtype)
        F = torch.empty(v, v, 3, 3, dtype=cd)
        w = torch.empty(B, v, T, J, dtype=dtype)
        m = torch.empty(B, T, dtype=torch.bool)
        pairs = tuple(default_pairs(v))
        if pair_kind == "ring":
            pairs = tuple(sorted({(0, j) for j in range(1, v)} | {(i, i + 1) for i in range(1, v - 1)}))
        distance = ("symmetric", "sampson")[dist]
        with _captured_launches() as rec:
            loss, stats = E.epipolar_loss_forward(x, F, w, m, pairs, distance, "mean")
            E.epipolar_loss_backward(torch.empty(()), x, F, w, m, loss, stats, pairs, distance, "mean",
                                     True, True, True)  # fmt: skip
        names = {
            "_epipolar_fwd_kernel": "fwd",
            "_epipolar_bwd_kernel": "bwd dx+dw",
            "_epipolar_df_kernel": "bwd dF",
        }
        out = [(f"epipolar {names[fn.__name__]}", fn, a, k) for fn, a, k in rec if fn.__name__ in names]
    elif case.group == "reductions":
        from mvlift.kernels import epipolar_loss as E
        from mvlift.kernels import line_loss as L

        cd = torch.float64 if case.params[0] == "fp64" else torch.float32
        with _captured_launches() as rec:
            E.finalize_partials(torch.empty(64, 17, 2, dtype=cd), "per_sequence")
            L.stage1_loss_forward(*[torch.empty(64, 120, 18, c, dtype=cd) for c in (2, 2, 3)], None, 1.0, cd)
        names = {"_finalize_kernel": "loss finalize", "_stage1_finalize_kernel": "stage-1 finalize"}
        out = [(names[fn.__name__], fn, a, k) for fn, a, k in rec if fn.__name__ in names]
    elif case.group == "line":
        from mvlift.kernels import line_loss as L

        dtype = getattr(torch, DTYPES[case.params[0]])
        cd = torch.float64 if dtype == torch.float64 else torch.float32
        B, T, J = 320, 120, 18  # stage 2's line term: B x 5 free views
        x, x0 = torch.empty(B, T, J, 2, dtype=dtype), torch.empty(B, T, J, 2, dtype=dtype)
        lines, m = torch.empty(B, T, J, 3, dtype=dtype), torch.empty(B, T, dtype=torch.bool)
        with _captured_launches() as rec:
            loss, stats = L.line_matching_loss_forward(x, lines, m, "mean", cd)
            L.line_matching_loss_backward(torch.empty((), dtype=cd), x, lines, m, stats, "mean", True, True)
            res = L.stage1_loss_forward(x, x0, lines, m, 1.0, cd)
            L.stage1_loss_backward(torch.empty(4, dtype=cd), x, x0, lines, m, res, 1.0, True, True, True)
        names = {
            "_line_fwd_kernel": "line fwd",
            "_line_bwd_kernel": "line bwd dx+dl",
            "_stage1_fwd_kernel": "stage-1 fwd",
            "_stage1_bwd_kernel": "stage-1 bwd all",
        }
        out = [(names[fn.__name__], fn, a, k) for fn, a, k in rec if fn.__name__ in names]
    elif case.group == "attention":
        from mvlift.kernels import cross_view_attention as A

        k, d, dt = case.params
        q = torch.empty(16, k, 4, d, dtype=getattr(torch, DTYPES[dt]))  # (N, K, H, D); N H = 64 rows
        for which, configs in (("fwd", A._FWD_CONFIGS), ("bwd", A._BWD_CONFIGS)):
            for cfg in A._prune(which)(configs, {"K": k, "D": d, "q_ptr": q}):
                bm, warps, chunk = cfg.kwargs["BLOCK_M"], cfg.num_warps, cfg.kwargs.get("CHUNK")
                with _captured_launches() as rec:
                    if which == "fwd":
                        A.cross_view_attention_forward(q, q, q, 0.125, block_m=bm, num_warps=warps)
                    else:
                        A.cross_view_attention_backward(q, q, q, q, 0.125, block_m=bm, num_warps=warps,
                                                        chunk=chunk)  # fmt: skip
                (fn, a, kw) = rec[0]
                kw = {**kw, "num_stages": cfg.num_stages}  # as the autotuner launches it
                tag = f"BLOCK_M={bm} warps={warps}" + (f" CHUNK={chunk}" if chunk else "")
                out.append((f"attention {which} {tag}", fn, a, kw))
    else:
        raise ValueError(f"unknown case group {case.group!r}")
    if not out:
        raise RuntimeError(f"case {case.group} {case.label}: no kernel launch captured")
    return out


# ----------------------------------------------------------------------------------------------- compile
def _ptxas_cache_dir() -> Path:
    from triton import knobs

    return Path(knobs.cache.dir) / "mvlift_ptxas"


def parse_ptxas(log: str) -> dict[str, int]:
    """Registers, spill stores/loads, stack frame and static shared memory (bytes) from a ``ptxas -v`` log
    of ONE kernel (the maxima over the log when it holds several)."""
    return {key: max([int(v) for v in rx.findall(log)], default=0) for key, rx in _PTXAS_RE.items()}


def _ptxas_report(ptx: str, arch: str, fmad: bool) -> str:
    """``ptxas -v`` of the PTX with Triton's own flags (cached by the PTX's hash)."""
    from triton.backends.nvidia import compiler as nv

    try:
        ptxas = nv.get_ptxas(90).path  # Triton 3.5+: per-architecture ptxas
    except TypeError:
        ptxas = nv.get_ptxas().path
    flags = ["-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch}"] + (
        [] if fmad else ["--fmad=false"]
    )
    key = hashlib.sha256((ptx + " ".join(flags)).encode()).hexdigest()
    cache = _ptxas_cache_dir() / f"{key}.log"
    if cache.is_file():
        return cache.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        run = subprocess.run(
            [ptxas, *flags, str(src), "-o", str(Path(tmp) / "k.o")], capture_output=True, text=True
        )
    if run.returncode != 0:
        raise RuntimeError(f"ptxas failed ({run.returncode}): {run.stderr[-2000:]}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(run.stderr)
    return run.stderr


def _pack_args(fn, backend, kwargs: dict, bound: dict, specialization: list) -> tuple:
    """(options, signature, constexprs, attrs) of a bound launch, as ``JITFunction.run`` derives them
    (its ``_pack_args`` in Triton 3.7; the same few lines inline for versions without it)."""
    if hasattr(fn, "_pack_args"):
        return fn._pack_args(backend, kwargs, bound, specialization, None)
    from triton._utils import find_paths_if, get_iterable_path

    options = backend.parse_options(kwargs)
    sigvals = [x[0] for x in specialization]
    signature = dict(zip([p.name for p in fn.params], sigvals, strict=True))
    paths = find_paths_if(sigvals, lambda _, val: val == "constexpr")
    constexprs = {path: get_iterable_path(list(bound.values()), path) for path in paths}
    attrvals = ["" if x[0] == "constexpr" else x[1] for x in specialization]
    paths = find_paths_if(attrvals, lambda _, x: isinstance(x, str))
    attrs = {path: backend.parse_attr(get_iterable_path(attrvals, path)) for path in paths}
    return options, signature, constexprs, attrs


def compile_launch(fn, args: tuple, kwargs: dict, capability: int) -> dict:
    """Compile one captured launch for ``sm_<capability>`` as the JIT would; returns its resource row."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import sm_arch_from_capability
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", capability, 32)
    backend = make_backend(target)
    kwargs = {"debug": False, **kwargs}
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = _pack_args(fn, backend, kwargs, bound, specialization)
    kernel = triton.compile(
        ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__
    )
    ptx = kernel.asm["ptx"]
    row = parse_ptxas(_ptxas_report(ptx, sm_arch_from_capability(capability), options.enable_fp_fusion))
    row["smem"] = max(row["smem"], int(kernel.metadata.shared))
    row["approx_f64"] = sorted(set(_APPROX_F64.findall(ptx)))
    row["num_warps"] = options.num_warps
    return row


def run_triton_case(case: Case, archs: tuple[int, ...]) -> list[dict]:
    """Capture and compile one case for every arch: its table rows (errors included, never raised)."""
    rows = []
    try:
        launches = _capture_case(case)
    except Exception as exc:  # a launcher that fails is a finding, reported like a compile error
        return [_row(case, "(launcher)", a, error=f"{type(exc).__name__}: {exc}") for a in archs]
    for name, fn, args, kwargs in launches:
        for arch in archs:
            t0 = time.perf_counter()
            try:
                res = compile_launch(fn, args, kwargs, arch)
                rows.append(_row(case, name, arch, seconds=time.perf_counter() - t0, **res))
            except Exception as exc:
                rows.append(_row(case, name, arch, error=f"{type(exc).__name__}: {str(exc)[-1500:]}"))
    return rows


def find_nvcc() -> str | None:
    """nvcc from ``CUDACXX``, ``PATH`` or /usr/local/cuda/bin (CMakeLists.txt's order), or None."""
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file():
            return cand
    return None


def run_cuda_case(case: Case, archs: tuple[int, ...]) -> list[dict]:
    """``nvcc -Xptxas -v`` of one CUDA source per arch (the build's flags: C++17, -O3, MVLIFT_WITH_CUDA):
    one row per kernel instantiation."""
    nvcc = find_nvcc()
    rows = []
    for arch in archs:
        if nvcc is None:
            rows.append(
                _row(case, "(nvcc)", arch, error="nvcc not found (CUDACXX, PATH, /usr/local/cuda/bin)")
            )
            continue
        with tempfile.TemporaryDirectory() as tmp:
            flags = ["-std=c++17", "-O3", "-DNDEBUG", "-DMVLIFT_WITH_CUDA=1", f"-I{REPO / 'csrc'}"]
            cmd = [nvcc, *flags, f"-arch=sm_{arch}", "-Xptxas", "-v", "-c", case.params[0]]
            cmd += ["-o", str(Path(tmp) / "k.o")]
            t0 = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            rows.append(_row(case, "(nvcc)", arch, error=run.stderr[-2000:]))
            continue
        # ptxas prints "Compiling entry function '<mangled>' for 'sm_90'" and then that kernel's lines.
        parts = re.split(r"Compiling entry function '([^']+)'", run.stderr)
        for mangled, log in zip(parts[1::2], parts[2::2], strict=True):
            rows.append(
                _row(case, _demangle(mangled), arch, seconds=time.perf_counter() - t0, **parse_ptxas(log))
            )
    return rows


def _demangle(name: str) -> str:
    """A short readable kernel name: the demangled template, without namespaces and argument lists."""
    cxxfilt = shutil.which("c++filt")
    if cxxfilt:
        name = subprocess.run([cxxfilt, name], capture_output=True, text=True).stdout.strip() or name
    name = name.replace("(anonymous namespace)::", "")
    name = re.sub(r"\([^()]*\)$", "", name)  # drop the parameter list
    name = re.sub(r"\b\w+::", "", name)  # drop namespaces
    return name.removeprefix("void ")


def _row(case: Case, kernel: str, arch: int, **fields) -> dict:
    row = {
        "group": case.group,
        "case": case.label,
        "kernel": kernel,
        "arch": f"sm_{arch}",
        "gated": case.gated,
    }
    row.update(fields)
    return row


def failures(row: dict) -> list[str]:
    """Why a row fails the check (empty: it passes)."""
    why = []
    if row.get("error"):
        why.append("compile error")
    if row["gated"] and (row.get("spill_stores", 0) or row.get("spill_loads", 0)):
        why.append(f"spills {row['spill_stores']} B")
    if row.get("approx_f64"):
        why.append("approximate f64: " + ", ".join(row["approx_f64"]))
    return why


# ----------------------------------------------------------------------------------------------- report
def format_table(rows: list[dict]) -> str:
    """A markdown table: one row per (kernel, case), one regs/spill column pair per arch."""
    archs = sorted({r["arch"] for r in rows}, reverse=True)
    by_key: dict[tuple, dict] = {}
    for r in rows:
        by_key.setdefault((r["group"], r["case"], r["kernel"]), {})[r["arch"]] = r
    head = ["kernel", "case", "gated"]
    for a in archs:
        head += [f"{a} regs", f"{a} spill st/ld B", f"{a} smem B"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (_, case, kernel), per_arch in by_key.items():
        cells = [kernel, case, "yes" if next(iter(per_arch.values()))["gated"] else ""]
        for a in archs:
            r = per_arch.get(a)
            if r is None:
                cells += ["", "", ""]
            elif r.get("error"):
                cells += ["ERROR", "", ""]
            else:
                spill = f"{r['spill_stores']}/{r['spill_loads']}"
                cells += [str(r["registers"]), f"**{spill}**" if r["spill_stores"] else spill, str(r["smem"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(r: dict | None) -> str:
    """``regs`` or ``regs (spill stores B)``; ERROR for a failed compile, blank when absent."""
    if r is None:
        return ""
    if r.get("error"):
        return "ERROR"
    return f"{r['registers']}" + (f" (**{r['spill_stores']}**)" if r["spill_stores"] else "")


def format_compact(rows: list[dict]) -> str:
    """The same rows, pivoted: the epipolar loss as one line per (dtype, V) with its three kernels, the
    attention as one line per (dtype, K, D) with the kept configs' count and largest register count and
    spill, the rest as in :func:`format_table`. Cells: registers, with spill-store bytes in bold."""
    archs = sorted({r["arch"] for r in rows}, reverse=True)
    out = []
    epi = [r for r in rows if r["group"] == "epipolar"]
    if epi:
        kernels = ("epipolar fwd", "epipolar bwd dx+dw", "epipolar bwd dF")
        head = ["case"] + [f"{a} {k.removeprefix('epipolar ')}" for a in archs for k in kernels]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        by = {(r["case"], r["kernel"], r["arch"]): r for r in epi}
        for case in dict.fromkeys(r["case"] for r in epi):
            cells = [case] + [_cell(by.get((case, k, a))) for a in archs for k in kernels]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    att = [r for r in rows if r["group"] == "attention"]
    if att:
        head = ["case"] + [
            f"{a} {w} {c}" for a in archs for w in ("fwd", "bwd") for c in ("configs", "max regs")
        ]
        head += [f"{a} spills" for a in archs]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for case in dict.fromkeys(r["case"] for r in att):
            cells = [case]
            spills = []
            for a in archs:
                for w in ("fwd", "bwd"):
                    mine = [
                        r for r in att if r["case"] == case and r["arch"] == a and f" {w} " in r["kernel"]
                    ]
                    ok = [r for r in mine if not r.get("error")]
                    cells += [str(len(mine)), str(max((r["registers"] for r in ok), default=0))]
                spilled = [r for r in att if r["case"] == case and r["arch"] == a and r.get("spill_stores")]
                spills.append(", ".join(f"{r['kernel']}: {r['spill_stores']} B" for r in spilled) or "0")
            out.append("| " + " | ".join(cells + spills) + " |")
        out.append("")
    rest = [r for r in rows if r["group"] not in ("epipolar", "attention")]
    if rest:
        out.append(format_table(rest))
    return "\n".join(out).rstrip()


def _work(item: tuple[Case, tuple[int, ...]]) -> list[dict]:
    case, archs = item
    return run_cuda_case(case, archs) if case.group == "cuda" else run_triton_case(case, archs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=("ci", "full"), default="ci", help="which cases (module docstring)")
    ap.add_argument("--arch", type=int, nargs="+", default=list(ARCHS), help="compute capabilities")
    ap.add_argument("--only", choices=("triton", "cuda"), default=None, help="only the Triton or CUDA code")
    ap.add_argument("--filter", default=None, help="only the cases whose 'group case' contains this text")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel compiles")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--from-json", default=None, help="compile nothing: print the table of these rows")
    ap.add_argument("--compact", action="store_true", help="print the pivoted table (format_compact)")
    args = ap.parse_args(argv)
    archs = tuple(args.arch)
    t0 = time.perf_counter()
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
        summary = f"{len(rows)} kernel compiles read from {args.from_json}"
    else:
        cases = []
        if args.only != "cuda":
            cases += triton_cases(args.set)
        if args.only != "triton":
            cases += cuda_cases()
        if args.filter:
            cases = [c for c in cases if args.filter in f"{c.group} {c.label}"]
        items = [(c, archs) for c in cases]
        if args.jobs > 1 and len(items) > 1:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
                results = list(pool.map(_work, items))
        else:
            results = [_work(it) for it in items]
        rows = [r for res in results for r in res]
        summary = (
            f"{len(rows)} kernel compiles ({len(cases)} cases, {', '.join(f'sm_{a}' for a in archs)}, set "
            f"{args.set}) in {time.perf_counter() - t0:.0f} s"
        )
    bad = [(r, failures(r)) for r in rows if failures(r)]
    print(format_compact(rows) if args.compact else format_table(rows))
    print(f"\n{summary}; {len(bad)} failing")
    for r, why in bad:
        print(
            f"FAIL {r['kernel']} [{r['case']}] {r['arch']}: {'; '.join(why)}"
            + (f"\n{r['error']}" if r.get("error") else "")
        )
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
