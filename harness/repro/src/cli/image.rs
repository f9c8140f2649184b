//! `repro image build`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::ImageBuildArgs;
use crate::error::{fail, Kind};
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
