//! `repro kernels`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::KernelsArgs;

pub(super) fn kernels(args: &KernelsArgs) -> Result<i32> {
    let catalog = crate::cli::requests::catalog()?;
    if args.matrix {
        let scenarios = crate::run::scenario::builtin_names(&args.scenarios)?;
        crate::text::outln(&serde_json::to_string(&crate::kernel::ci::Matrix::of_catalog(&catalog, &scenarios, args.kernel.as_deref())?)?);
        return Ok(exit_codes::OK);
    }
    if args.json {
        crate::text::outln(&serde_json::to_string_pretty(&catalog.kernel)?.to_string());
        return Ok(exit_codes::OK);
    }
    crate::text::outln(&format!("{:<18} {:<20} {:<10} DESCRIPTION", "NAME", "ALIASES", "SEED"));
    for e in &catalog.kernel {
        let seed = e.expect.get("seed").map_or("?", |x| x.as_str());
        crate::text::outln(&format!("{:<18} {:<20} {:<10} {}", e.name, e.aliases.join(","), seed, e.description));
    }
    crate::text::outln("\nAny other kernel: --kernel PATH/TO/bzImage, or --src DIR to build a source tree");
    Ok(exit_codes::OK)
}
