//! `repro image build` and `repro image key`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::{ImageBuildArgs, ImageKeyArgs};
use crate::error::{fail, Kind};
use crate::kernel::build::Recipe;
use crate::kernel::catalog::{Catalog, Source};
use crate::kernel::spec::KernelSpec;

pub(super) fn image_build(args: &ImageBuildArgs) -> Result<i32> {
    let cache = args.cache.cache();
    let img = match (&args.src, &args.kernel) {
        (Some(dir), _) => KernelSpec::Tree(dir.clone()).resolve(&Catalog::builtin()?, &cache, args.cc.as_deref())?,
        (None, Some(name)) => {
            let catalog = Catalog::builtin()?;
            if !matches!(catalog.lookup(name)?.source, Source::Build { .. }) {
                return Err(fail(Kind::Usage, format!("{name} is a prebuilt package, not a build entry: `repro fetch {name}` gets it")));
            }
            KernelSpec::Catalog(name.clone()).resolve(&catalog, &cache, args.cc.as_deref())?
        }
        (None, None) => return Err(fail(Kind::Usage, "name a catalog build entry or pass --src DIR")),
    };
    crate::text::outln(&format!("{}\t{}\t{}", img.path.display(), img.sha256, img.origin));
    Ok(exit_codes::OK)
}

/// The cache entry each named build entry's image has on this machine.
pub(super) fn image_key(args: &ImageKeyArgs) -> Result<i32> {
    let cache = args.cache.cache();
    let catalog = Catalog::builtin()?;
    let mut lines = Vec::new();
    for name in args.kernels.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        let e = catalog.lookup(name)?;
        let Source::Build(b) = &e.source else {
            return Err(fail(Kind::Usage, format!("{name} is a prebuilt package, not a build entry: its image is the package itself")));
        };
        let recipe = Recipe::catalog(&catalog, &e.name, b, None)?;
        let resolved = recipe.resolve(&cache)?;
        lines.push(format!("{}\t{}", e.name, recipe.entry_name(&resolved.key)));
    }
    for l in lines {
        crate::text::outln(&l);
    }
    Ok(exit_codes::OK)
}
