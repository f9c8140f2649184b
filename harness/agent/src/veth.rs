//! A veth pair in the current network namespace, made with rtnetlink as a
//! container runtime makes a container's interface. Called in a freshly
//! forked, single-threaded churn child (and by the cleanup barrier in the
//! single-threaded agent): a current-thread tokio runtime is built for the
//! call and dropped before it returns.

use std::future::Future;

use futures_util::TryStreamExt;
use rtnetlink::{new_connection, Handle, LinkUnspec, LinkVeth};

/// `f` with an rtnetlink handle, on a runtime of its own.
pub fn with_netlink<T, Fut: Future<Output = Result<T, String>>>(f: impl FnOnce(Handle) -> Fut) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        let (connection, handle, _) = new_connection().map_err(|e| format!("netlink socket: {e}"))?;
        tokio::spawn(connection);
        f(handle).await
    })
}

pub fn create_pair(name: &str, peer: &str) -> Result<(), String> {
    with_netlink(|handle| async move {
        handle.link().add(LinkVeth::new(name, peer).build()).execute().await.map_err(|e| format!("adding veth {name}/{peer}: {e}"))?;
        // Up, as a runtime leaves it: the per-device sysctls exist either way.
        let mut links = handle.link().get().match_name(name.to_string()).execute();
        if let Some(link) = links.try_next().await.map_err(|e| format!("finding {name}: {e}"))? {
            handle
                .link()
                .set(LinkUnspec::new_with_index(link.header.index).up().build())
                .execute()
                .await
                .map_err(|e| format!("setting {name} up: {e}"))?;
        }
        Ok(())
    })
}
