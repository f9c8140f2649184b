//! `repro image build` and `repro image key`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::{ImageBuildArgs, ImageKeyArgs};
use crate::error::{fail, Kind};
use crate::kernel::build::Recipe;
use crate::kernel::spec::KernelSpec;

pub(super) fn image_build(args: &ImageBuildArgs) -> Result<i32> {
    let catalog = crate::cli::requests::catalog()?;
    let spec = match (&args.src, &args.kernel) {
        (Some(dir), _) => KernelSpec::Tree(dir.clone()),
        (None, Some(name)) => KernelSpec::Catalog(catalog.build_entry(name)?.0.name.clone()),
        (None, None) => return Err(fail(Kind::Usage, "name a catalog build entry or pass --src DIR")),
    };
    let img = spec.resolve(&catalog, &args.cache.cache(), args.cc.as_deref(), &[])?;
    crate::text::outln(&format!("{}\t{}\t{}", img.path.display(), img.sha256, img.origin));
    Ok(exit_codes::OK)
}

/// The cache entry each named build entry's image has on this machine.
pub(super) fn image_key(args: &ImageKeyArgs) -> Result<i32> {
    let (cache, catalog) = (args.cache.cache(), crate::cli::requests::catalog()?);
    let names = args.kernels.iter().map(|k| k.trim()).filter(|k| !k.is_empty());
    let entries = names.map(|n| Recipe::cache_entry_of(&catalog, n, &cache)).collect::<Result<Vec<_>>>()?;
    let lines = entries.into_iter().map(|(name, entry)| format!("{name}\t{entry}"));
    for l in lines {
        crate::text::outln(&l);
    }
    Ok(exit_codes::OK)
}
