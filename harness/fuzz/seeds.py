#!/usr/bin/env python3
"""Write the fuzz targets' seed inputs into corpus/<target>/seed-*.

The seeds are what each reader meets in real use: recorded runs from
results/ (agent streams, summaries, a bisection), the project's own
scenarios and catalog, and small archives made here in the formats the
downloads come in (a .deb with xz, zstd, gzip or no compression; tarballs
with links; a checkpoint state of the current format). Run from anywhere;
the files it writes are committed, and libFuzzer adds what it finds
beside them (ci/fuzz.sh).
"""

import gzip
import hashlib
import io
import json
import lzma
import pathlib
import subprocess
import tarfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def tarball(entries):
    """A tar of (name, kind, payload): kind file, dir, symlink or hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "file":
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
            info.linkname = payload or ""
            t.addfile(info)
    return buf.getvalue()


def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        head = f"{name:<16}{1700000000:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += head + data + (b"\n" if len(data) % 2 else b"")
    return out


def deb(data_name, data):
    return ar([("debian-binary", b"2.0\n"), ("control.tar.xz", lzma.compress(tarball([]))), (data_name, data)])


def main():
    # The seeds are made anew; what the fuzzers kept beside them stays.
    for old in CORPUS.glob("*/seed-*"):
        old.unlink()

    # The agent's stream: recorded runs' samples.jsonl, as the serial line carried them.
    for run in ["results/held-fd/6.1-noprune-3000", "results/seed/6.1-3000", "results/sysctl-all/6.1-src-500"]:
        put("agent_stream", run.replace("/", "_"), (ROOT / run / "samples.jsonl").read_bytes())

    # summary.json as report reads it; one with a matrix for --expect after a NUL.
    for run in ["results/seed/6.1-noprune-3000", "results/real-trees/3.12-check", "results/real-trees/4.1.52-check",
                "results/checkpoint/6.1-noprune-20000-checkpointed"]:
        put("report_summary", run.replace("/", "_"), (ROOT / run / "summary.json").read_bytes())
    matrix = subprocess.run(["cargo", "run", "-q", "-p", "repro", "--", "kernels", "--matrix"], cwd=ROOT, check=True,
                            capture_output=True).stdout
    put("report_summary", "with-matrix", (ROOT / "results/seed/6.1-3000/summary.json").read_bytes() + b"\0" + matrix)

    # A checkpoint of the current format (3) beside the target's kernel and initramfs.
    summary = json.loads((ROOT / "results/checkpoint/6.1-noprune-20000-checkpointed/summary.json").read_text())
    summary["windows"] = [w for w in summary["windows"] if w["iteration"] <= 500]
    summary["complete"] = False
    summary["settled"] = None
    state = {
        "format_version": 3,
        "machine": {"accel": "tcg", "kvm_cpu": "host", "cpus": 2, "memory_mib": 1024,
                    "cmdline": "console=ttyS0 panic=-1 rdinit=/init"},
        "qemu_version": "QEMU emulator version 10.0.0 (repro fuzz)",
        "cpu_vendor": None,
        "kernel_sha256": hashlib.sha256(b"a kernel image").hexdigest(),
        "initrd_sha256": hashlib.sha256(b"an initramfs").hexdigest(),
        "state_file": "vm-500.gz",
        "summary_file": "summary-500.json",
        "iteration": 500,
        "samples_bytes": 64,
        "stall_timeout_s": 120.0,
    }
    put("checkpoint_state", "format-3", json.dumps(state, indent=1).encode() + b"\0" + json.dumps(summary).encode())

    # bisect.json: the recorded bisection in the current format (answers old/new, format 2).
    b = json.loads((ROOT / "results/bisect/4.9.y-fix/bisect.json").read_text())
    word = {"unfixed": "old", "fixed": "new"}
    b["version"] = 2
    for s in b["steps"]:
        s["answer"] = word.get(s["answer"], s["answer"])
    b["result"]["recheck"] = [[r, word.get(a, a)] for r, a in b["result"]["recheck"]]
    put("bisect_state", "4.9.y-fix", json.dumps(b, indent=2).encode())

    for f in sorted((ROOT / "scenarios").glob("*.toml")):
        put("scenario_toml", f.stem, f.read_bytes())
    for f in ["catalog.toml", "eras.toml"]:
        put("catalog_toml", f, (ROOT / "vm-images" / f).read_bytes())

    # Debian packages: the image and a module in every compression fetch reads; a source package.
    data = tarball([("./boot/", "dir", None), ("./boot/vmlinuz-6.1.0-fuzz-amd64", "file", b"MZ a kernel"),
                    ("./lib/modules/6.1.0-fuzz-amd64/kernel/drivers/net/veth.ko", "file", b"\x7fELF module")])
    put("deb_package", "xz", deb("data.tar.xz", lzma.compress(data, format=lzma.FORMAT_XZ)))
    put("deb_package", "gz", deb("data.tar.gz", gzip.compress(data, mtime=0)))
    put("deb_package", "plain", deb("data.tar", data))
    zst = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    put("deb_package", "zst", deb("data.tar.zst", zst))
    tree = tarball([("linux-source-6.1/Makefile", "file", b"VERSION = 6\n")])
    src = tarball([("./usr/src/linux-source-6.1.tar.xz", "file", lzma.compress(tree, format=lzma.FORMAT_XZ))])
    put("deb_package", "source", deb("data.tar.xz", lzma.compress(src, format=lzma.FORMAT_XZ)))

    # Kernel tarballs: a tree with links inside it, and one whose link leaves it.
    put("tar_unpack", "tree", tarball([
        ("linux-6.1/", "dir", None), ("linux-6.1/Makefile", "file", b"VERSION = 6\n"),
        ("linux-6.1/include/", "dir", None), ("linux-6.1/include/a.h", "file", b"#define A\n"),
        ("linux-6.1/arch/x86/include/asm", "symlink", "../../../include"),
        ("linux-6.1/b.h", "hardlink", "linux-6.1/include/a.h"),
    ]))
    put("tar_unpack", "refused-escaping-link", tarball([("linux-6.1/", "dir", None), ("linux-6.1/etc", "symlink", "../../../etc")]))

    # An RPM from the fixture builder the fetch tests serve in place of CentOS's (rpm crate).
    subprocess.run(["cargo", "test", "-q", "-p", "repro", "--test", "integration", "--", "--ignored", "--exact",
                    "fuzz_corpus::write_the_rpm_seed"], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
