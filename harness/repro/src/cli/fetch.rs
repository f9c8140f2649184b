//! `repro fetch`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::FetchArgs;
use crate::kernel::spec::KernelSpec;

pub(super) fn fetch(args: &FetchArgs) -> Result<i32> {
    let catalog = crate::cli::requests::catalog()?;
    let img = KernelSpec::Catalog(args.kernel.clone()).resolve(&catalog, &args.cache.cache(), args.cc.as_deref(), &[])?;
    crate::text::outln(&format!("{}\t{}\t{}", img.path.display(), img.sha256, img.origin));
    Ok(exit_codes::OK)
}
