//! QEMU: the command line, built from small pure functions, and a guard that
//! owns the process.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{fail, Kind};
pub(crate) use repro_proto::Accel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM if /dev/kvm opens and a guest boots on it within --kvm-timeout; else TCG.
    Auto,
    Kvm,
    Tcg,
}

impl AccelChoice {
    /// The accelerators to try, in order, and why KVM is not among them.
    pub fn plan(self) -> (Vec<Accel>, Option<String>) {
        match self {
            AccelChoice::Kvm => (vec![Accel::Kvm], None),
            AccelChoice::Tcg => (vec![Accel::Tcg], None),
            AccelChoice::Auto => match kvm_device_usable() {
                Ok(()) => (vec![Accel::Kvm, Accel::Tcg], None),
                Err(why) => (vec![Accel::Tcg], Some(why)),
            },
        }
    }
}

/// The machine a guest runs on, the same wherever it runs: what QEMU must
/// be given again to load a saved state, so a checkpoint records it. Which
/// QEMU runs it and where the kernel image lies are this host's (in
/// [`VmSpec`]), never read from a checkpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Machine {
    pub accel: Accel,
    /// `-cpu` under KVM ([`crate::kernel::catalog::Catalog::kvm_cpu_model`]).
    pub kvm_cpu: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub cmdline: String,
}

impl Machine {
    /// Whether these are values repro itself gives QEMU: what a checkpoint
    /// (outside data) says is checked here before QEMU sees any of it.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(1..=MAX_CPUS).contains(&self.cpus) {
            return Err(format!("{} CPUs is outside 1 to {MAX_CPUS}", self.cpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(format!("{} MiB of memory is outside {MIN_MEMORY_MIB} MiB to {} GiB", self.memory_mib, MAX_MEMORY_MIB >> 10));
        }
        let model = |c: char| c.is_ascii_alphanumeric() || "-_.,=+".contains(c);
        if self.kvm_cpu.is_empty() || self.kvm_cpu.len() > 64 || !self.kvm_cpu.chars().all(model) {
            return Err(format!("{:?} is not a QEMU CPU model name", crate::text::clip(&self.kvm_cpu, 80)));
        }
        if self.cmdline.len() > 4096 || !self.cmdline.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err("the kernel command line is over 4096 bytes or holds control characters".into());
        }
        Ok(())
    }
}

/// This host's MemAvailable in MiB, if /proc/meminfo says.
pub(crate) fn host_available_mib() -> Option<u64> {
    repro_proto::meminfo_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemAvailable").map(|kib| kib / 1024)
}

/// The run directory's log of QEMU's stderr under `accel`.
pub(crate) fn stderr_log(accel: Accel) -> String {
    format!("qemu-{}.stderr.log", accel.as_str())
}

/// Bounds of what repro gives a guest (and accepts from a checkpoint).
const MAX_CPUS: u32 = 256;
const MIN_MEMORY_MIB: u64 = 64;
const MAX_MEMORY_MIB: u64 = 16 << 20;

/// Everything one boot needs: this host's QEMU and kernel image, the
/// machine, and this boot's files.
#[derive(Debug, Clone)]
pub(crate) struct VmSpec {
    pub qemu: Qemu,
    pub kernel: PathBuf,
    pub machine: Machine,
    pub initrd: PathBuf,
    pub console_log: PathBuf,
    pub proto_socket: PathBuf,
    /// QEMU's machine protocol, for a run that saves checkpoints.
    pub qmp_socket: Option<PathBuf>,
    /// Start paused, waiting for a saved state (`repro resume`).
    pub incoming: bool,
}

/// No default devices, no display, no monitor; exit instead of rebooting.
pub(crate) fn base_args() -> Vec<OsString> {
    args(&["-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none"])
}

/// The accelerator and the CPU model it gets. KVM: `kvm_cpu`, the host's
/// CPU for current kernels and a model of their time for old ones (the
/// catalog's `[[kvm_cpu]]`), so a runner's newest CPU features never meet
/// a kernel that predates them.
pub(crate) fn accel_args(accel: Accel, kvm_cpu: &str) -> Vec<OsString> {
    match accel {
        Accel::Kvm => args(&["-accel", "kvm", "-cpu", kvm_cpu]),
        // `max` gives TCG every feature it emulates; kernels and the static
        // agent need nothing beyond baseline x86-64.
        Accel::Tcg => args(&["-accel", "tcg", "-cpu", "max"]),
    }
}

/// The `-cpu` model `accel` runs with.
pub(crate) fn cpu_model(accel: Accel, kvm_cpu: &str) -> &str {
    match accel {
        Accel::Kvm => kvm_cpu,
        Accel::Tcg => "max",
    }
}

pub(crate) fn machine_args(cpus: u32, memory_mib: u64) -> Vec<OsString> {
    vec!["-smp".into(), cpus.to_string().into(), "-m".into(), format!("{memory_mib}M").into()]
}

/// The kernel and initrd paths go to QEMU as the OS spelled them.
pub(crate) fn boot_args(kernel: &Path, initrd: &Path, cmdline: &str) -> Vec<OsString> {
    vec!["-kernel".into(), kernel.into(), "-initrd".into(), initrd.into(), "-append".into(), cmdline.into()]
}

/// ttyS0: the console, to a file. ttyS1: the agent's protocol, to repro's
/// Unix socket (QEMU connects as the client, so repro listens first).
pub(crate) fn serial_args(console_log: &Path, proto_socket: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        append(option("file,id=console,path=", console_log), ",append=on"),
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        option("socket,id=proto,path=", proto_socket),
        "-serial".into(),
        "chardev:proto".into(),
    ]
}

fn append(mut s: OsString, tail: &str) -> OsString {
    s.push(tail);
    s
}

/// `prefix` and a path as the value of a QEMU option list
/// (`key=value,key=value`): a comma in the path is written twice, or QEMU
/// would read the rest as options. Bytes, so any path the OS allows survives.
fn option(prefix: &str, p: &Path) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    for &b in p.as_os_str().as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
}

/// The guest kernel's command line: console on ttyS0, panic ends QEMU at
/// once, and expedited RCU grace periods. A dead network namespace is
/// cleaned up (and, on a fixed kernel, its dentries pruned) only after RCU
/// grace periods, which under TCG lag: Debian's 6.1 left 1.2-1.6 dentries
/// per namespace after 15 s of settling with normal grace periods, and
/// 0.003 with expedited ones. A kernel with the bug keeps its dentries
/// either way. Kernels before 3.19 do not know the parameter and ignore it.
/// `no_timer_check`: see [`crate::guest::guard`]. `cryptomgr.notests`: a
/// distribution kernel self-tests every crypto algorithm it registers at
/// boot, 0.7 s of Debian 6.1's 2.5-3.2 s to /init under TCG; nothing here
/// uses the kernel's crypto. A kernel without the parameter ignores it (a
/// dotted name is a module's, never passed to /init).
pub(crate) fn kernel_cmdline(extra: &str) -> String {
    let mut c = String::from("console=ttyS0 panic=-1 rdinit=/init rcupdate.rcu_expedited=1 no_timer_check cryptomgr.notests");
    if !extra.trim().is_empty() {
        c.push(' ');
        c.push_str(extra.trim());
    }
    c
}

pub(crate) fn command_args(spec: &VmSpec) -> Vec<OsString> {
    let m = &spec.machine;
    [
        base_args(),
        data_args(&spec.qemu.data_dirs),
        accel_args(m.accel, &m.kvm_cpu),
        machine_args(m.cpus, m.memory_mib),
        boot_args(&spec.kernel, &spec.initrd, &m.cmdline),
        serial_args(&spec.console_log, &spec.proto_socket),
        spec.qmp_socket.as_deref().map(qmp_args).unwrap_or_default(),
        if spec.incoming { incoming_args() } else { Vec::new() },
    ]
    .concat()
}

/// QEMU's machine protocol on a Unix socket QEMU listens on: how a
/// checkpointed run stops the guest and saves it.
pub(crate) fn qmp_args(socket: &Path) -> Vec<OsString> {
    vec!["-qmp".into(), append(option("unix:", socket), ",server=on,wait=off")]
}

/// Start with the guest's state to come over the machine protocol
/// (`migrate-incoming`), not by booting.
pub(crate) fn incoming_args() -> Vec<OsString> {
    args(&["-incoming", "defer"])
}

/// `-L DIR` for each data directory, searched before the built-in ones.
pub(crate) fn data_args(dirs: &[PathBuf]) -> Vec<OsString> {
    dirs.iter().flat_map(|d| [OsString::from("-L"), d.as_os_str().to_owned()]).collect()
}

/// A QEMU to run: the machine's, one named by --qemu, or one fetched.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Qemu {
    pub program: PathBuf,
    pub data_dirs: Vec<PathBuf>,
}

/// The version `qemu --version` states ("QEMU emulator version 7.2.19 (...)").
pub(crate) fn parse_version(line: &str) -> Option<semver::Version> {
    let v = line.split_whitespace().skip_while(|w| *w != "version").nth(1)?;
    let mut n = v.split(['.', '-', '+', '(']).map(|x| x.parse::<u64>().ok());
    Some(semver::Version::new(n.next()??, n.next().flatten().unwrap_or(0), n.next().flatten().unwrap_or(0)))
}

/// The QEMU a kernel needs: the machine's if it is new enough, else the
/// one `need` names, fetched with apt into the cache (never installed).
pub(crate) fn for_need(
    system: PathBuf,
    need_name: &str,
    need: &crate::kernel::catalog::QemuNeed,
    cache: &crate::kernel::cache::Cache,
) -> Result<Qemu> {
    let have = version(&system).as_deref().and_then(parse_version);
    if have.as_ref().is_some_and(|v| need.min_version.matches(v)) {
        return Ok(Qemu { program: system, data_dirs: vec![] });
    }
    tracing::info!(
        "this kernel needs QEMU {} ({}); the machine's is {}: fetching {need_name}",
        need.min_version,
        need.why,
        have.map_or("of unknown version".into(), |v| v.to_string())
    );
    let dir = crate::kernel::toolchain::fetch_tool(need_name, &need.tool(), cache, |why| {
        fail(
            Kind::QemuMissing,
            format!(
                "this kernel needs QEMU {} ({}), and {need_name} cannot be fetched: {why}. Install a QEMU that new and pass --qemu",
                need.min_version, need.why
            ),
        )
    })?;
    Ok(Qemu { program: dir.join(&need.driver), data_dirs: vec![dir.join(&need.data)] })
}

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

/// Find qemu-system-x86_64: `--qemu`, else $REPRO_QEMU, else $PATH.
pub(crate) fn find(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidate = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os("REPRO_QEMU").map(PathBuf::from));
    if let Some(p) = candidate {
        if is_executable(&p) {
            return Ok(p);
        }
        return Err(fail(
            Kind::QemuMissing,
            format!(
                "QEMU at {} does not exist or is not executable; fix --qemu/REPRO_QEMU, or drop it to use qemu-system-x86_64 from PATH",
                p.display()
            ),
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("qemu-system-x86_64")).find(|p| is_executable(p)).ok_or_else(|| {
        fail(
            Kind::QemuMissing,
            "qemu-system-x86_64 is not installed (not found on PATH): install it with `sudo apt-get install -y qemu-system-x86` \
                 on Debian/Ubuntu (or run ci/setup.sh), or point --qemu at a QEMU binary; `repro run --backend host` runs without QEMU",
        )
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// First line of `qemu --version`, for provenance.
pub(crate) fn version(qemu: &Path) -> Option<String> {
    let out = crate::child::output(std::process::Command::new(qemu).arg("--version"), "qemu --version", std::time::Duration::from_secs(30))
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
}

/// Whether /dev/kvm can be opened for read and write. Necessary, not
/// sufficient: nested KVM can open fine and then hang the guest, which only
/// a boot handshake can tell.
pub(crate) fn kvm_device_usable() -> Result<(), String> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop).map_err(|e| format!("/dev/kvm cannot be opened ({e})"))
}

/// QEMU under KVM with no machine to run, answering QMP on its stdio: the
/// CPU model query of [`kvm_model_gaps`].
pub(crate) fn kvm_query_args(data_dirs: &[PathBuf]) -> Vec<OsString> {
    [base_args(), data_args(data_dirs), args(&["-machine", "none", "-accel", "kvm", "-qmp", "stdio"])].concat()
}

/// The features of CPU model `model` that KVM on this host cannot give a
/// guest, as QEMU reports them (`query-cpu-definitions` under `-accel kvm`,
/// nothing booted: 0.13 s here). Where a nested KVM reports no SSE3 at
/// all, SandyBridge lacks eleven features and its guest hangs silent; a
/// model with gaps is not the CPU the catalog chose for the kernel.
pub(crate) fn kvm_model_gaps(qemu: &Path, data_dirs: &[PathBuf], model: &str) -> Result<Vec<String>> {
    use std::process::{Command, Stdio};
    const BOUND: std::time::Duration = std::time::Duration::from_secs(10);
    let mut cmd = Command::new(qemu);
    cmd.args(kvm_query_args(data_dirs)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    crate::child::own(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("starting {}: {e}", qemu.display()))?;
    let (out, inp) = (child.stdout.take().expect("piped stdout"), child.stdin.take().expect("piped stdin"));
    // The query on a thread, so a QEMU that never answers costs BOUND.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let defs = crate::guest::qmp::Qmp::over(out, inp).and_then(|mut q| q.run(&qapi::qmp::query_cpu_definitions {}));
        let _ = tx.send(defs);
    });
    let answer = rx.recv_timeout(BOUND);
    let _ = child.kill();
    let _ = child.wait();
    let defs = answer.map_err(|_| anyhow::anyhow!("QEMU did not answer query-cpu-definitions within {BOUND:?}"))??;
    let def = defs.into_iter().find(|d| d.name == model).ok_or_else(|| anyhow::anyhow!("QEMU under KVM knows no CPU model {model}"))?;
    Ok(def.unavailable_features.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kvm_query_boots_nothing_and_speaks_qmp_on_stdio() {
        let a = kvm_query_args(&[PathBuf::from("/q")]);
        let s: Vec<&str> = a.iter().map(|x| x.to_str().unwrap()).collect();
        assert!(s.windows(2).any(|w| w == ["-machine", "none"]) && s.windows(2).any(|w| w == ["-qmp", "stdio"]), "{s:?}");
        assert!(s.windows(2).any(|w| w == ["-accel", "kvm"]) && s.windows(2).any(|w| w == ["-L", "/q"]), "{s:?}");
        assert!(!s.contains(&"-kernel"), "{s:?}");
    }

    /// On a host with /dev/kvm: the query answers for a model QEMU has,
    /// and `host` is by definition what KVM gives.
    #[test]
    fn the_kvm_query_answers_for_a_real_model() {
        if kvm_device_usable().is_err() {
            return;
        }
        let Ok(q) = find(None) else { return };
        assert_eq!(kvm_model_gaps(&q, &[], "host").unwrap(), Vec::<String>::new());
        kvm_model_gaps(&q, &[], "SandyBridge").unwrap();
        assert!(kvm_model_gaps(&q, &[], "NoSuchModel").is_err());
    }

    #[test]
    fn qemu_versions_are_read_from_the_version_line_and_data_dirs_become_dash_l() {
        assert_eq!(parse_version("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"), Some(semver::Version::new(7, 2, 19)));
        assert_eq!(parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)"), Some(semver::Version::new(10, 0, 2)));
        assert_eq!(parse_version("QEMU emulator version 8.2"), Some(semver::Version::new(8, 2, 0)));
        assert_eq!(parse_version("something else"), None);
        let mut s = spec(Accel::Tcg);
        s.qemu.data_dirs = vec![PathBuf::from("/c/qemu-10/usr/share/qemu")];
        let argv = command_args(&s);
        let i = argv.iter().position(|a| a == "-L").unwrap();
        assert_eq!(argv[i + 1], "/c/qemu-10/usr/share/qemu");
        assert!(!command_args(&spec(Accel::Tcg)).iter().any(|a| a == "-L"));
    }

    fn spec(accel: Accel) -> VmSpec {
        VmSpec {
            qemu: Qemu { program: "/usr/bin/qemu-system-x86_64".into(), data_dirs: vec![] },
            kernel: "/k/bzImage".into(),
            machine: Machine { accel, kvm_cpu: "host".into(), cpus: 2, memory_mib: 2048, cmdline: kernel_cmdline("") },
            initrd: "/r/initramfs.cpio".into(),
            console_log: "/r/console.log".into(),
            proto_socket: "/t/proto.sock".into(),
            qmp_socket: None,
            incoming: false,
        }
    }

    #[test]
    fn a_checkpointed_guest_gets_a_qmp_socket_and_a_resumed_one_waits_for_its_state() {
        let plain = command_args(&spec(Accel::Tcg));
        assert!(!plain.iter().any(|a| a == "-qmp" || a == "-incoming"));
        let mut s = spec(Accel::Tcg);
        s.qmp_socket = Some("/t/a,b/qmp.sock".into());
        s.incoming = true;
        let argv = command_args(&s);
        assert_eq!(after(&argv, "-qmp"), ["unix:/t/a,,b/qmp.sock,server=on,wait=off"]);
        assert_eq!(after(&argv, "-incoming"), ["defer"]);
    }

    fn after<'a>(v: &'a [OsString], flag: &str) -> Vec<&'a str> {
        v.windows(2).filter(|w| w[0] == flag).map(|w| w[1].to_str().unwrap()).collect()
    }

    #[test]
    fn accel_args_pick_the_accelerator_and_cpu_model() {
        assert_eq!(accel_args(Accel::Tcg, "SandyBridge"), ["-accel", "tcg", "-cpu", "max"]);
        assert_eq!(accel_args(Accel::Kvm, "host"), ["-accel", "kvm", "-cpu", "host"]);
        assert_eq!(accel_args(Accel::Kvm, "SandyBridge"), ["-accel", "kvm", "-cpu", "SandyBridge"]);
    }

    #[test]
    fn console_is_ttys0_and_protocol_is_ttys1() {
        let a = serial_args(Path::new("/r/console.log"), Path::new("/t/p.sock"));
        // The order of -serial options is the order of ttyS devices.
        assert_eq!(after(&a, "-serial"), ["chardev:console", "chardev:proto"]);
        let chardevs = after(&a, "-chardev");
        assert_eq!(chardevs[0], "file,id=console,path=/r/console.log,append=on");
        assert_eq!(chardevs[1], "socket,id=proto,path=/t/p.sock");
        assert!(!chardevs[1].contains("server"), "QEMU must connect to repro, not listen");
        // A comma in a path would start a new option.
        let a = serial_args(Path::new("/runs/a,b/console.log"), Path::new("/t/x,server=on"));
        assert_eq!(
            after(&a, "-chardev"),
            ["file,id=console,path=/runs/a,,b/console.log,append=on", "socket,id=proto,path=/t/x,,server=on"]
        );
    }

    #[test]
    fn full_command_boots_kernel_and_initrd_without_defaults() {
        let a = command_args(&spec(Accel::Tcg));
        assert!(a.contains(&"-nodefaults".into()) && a.contains(&"-no-reboot".into()));
        assert_eq!(after(&a, "-kernel"), ["/k/bzImage"]);
        assert_eq!(after(&a, "-initrd"), ["/r/initramfs.cpio"]);
        assert_eq!(after(&a, "-m"), ["2048M"]);
        assert_eq!(after(&a, "-smp"), ["2"]);
        let append = after(&a, "-append")[0];
        assert!(append.contains("console=ttyS0") && append.contains("panic=-1"), "{append}");
    }

    #[test]
    fn a_path_that_is_not_utf8_reaches_qemu_byte_for_byte() {
        let kernel = PathBuf::from(OsString::from_vec(b"/k/\xffbzImage".to_vec()));
        let a = boot_args(&kernel, Path::new("/r/i"), "");
        assert_eq!(a[1].as_bytes(), b"/k/\xffbzImage");
        let s = serial_args(&PathBuf::from(OsString::from_vec(b"/r/\xfe,c.log".to_vec())), Path::new("/t/p"));
        assert_eq!(s[1].as_bytes(), b"file,id=console,path=/r/\xfe,,c.log,append=on");
    }

    #[test]
    fn cmdline_extra_is_appended() {
        assert_eq!(
            kernel_cmdline("  loglevel=3 "),
            "console=ttyS0 panic=-1 rdinit=/init rcupdate.rcu_expedited=1 no_timer_check cryptomgr.notests loglevel=3"
        );
    }

    #[test]
    fn explicit_missing_qemu_is_a_qemu_missing_error() {
        let e = find(Some(Path::new("/nonexistent/qemu"))).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::QemuMissing));
    }
}
