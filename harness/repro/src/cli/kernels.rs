//! `repro kernels`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::KernelsArgs;
use crate::kernel::catalog::Catalog;

pub fn kernels(args: &KernelsArgs) -> Result<i32> {
    let catalog = Catalog::builtin()?;
    if args.matrix {
        println!("{}", serde_json::to_string(&crate::kernel::ci::matrix(&catalog, &args.scenarios, args.kernel.as_deref())?)?);
        return Ok(exit_codes::OK);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&catalog.kernel)?);
        return Ok(exit_codes::OK);
    }
    println!("{:<18} {:<20} {:<10} DESCRIPTION", "NAME", "ALIASES", "SEED");
    for e in &catalog.kernel {
        let seed = e.expect.get("seed").map_or("?", |x| x.as_str());
        println!("{:<18} {:<20} {:<10} {}", e.name, e.aliases.join(","), seed, e.description);
    }
    println!("\nAny other kernel: --kernel PATH/TO/bzImage, or --src DIR to build a source tree");
    Ok(exit_codes::OK)
}
