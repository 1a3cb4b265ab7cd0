//! Image garbage collection, as the kubelet's: when the filesystem holding the images is more
//! than `high` percent full, images no container uses are removed, least recently used
//! first, until it is below `low` percent (or nothing unused is left).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tug_runtime::Runtime;

/// Usage thresholds, in percent of the image filesystem, and the least time since an image
/// was last used (pulled, imported or started) before it may go.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub high: u8,
    pub low: u8,
    pub min_age: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        // The kubelet's defaults.
        Thresholds {
            high: 85,
            low: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

/// Image references of the pods bound to the node, by pod UID: their images are kept even
/// before their containers start.
pub type Wanted = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>;

/// One pass: the IDs of the images removed.
pub fn collect(rt: &dyn Runtime, t: Thresholds, wanted: &Wanted) -> Vec<String> {
    let (used, total) = rt.image_fs();
    if total == 0 || used * 100 <= total * t.high as u64 {
        return Vec::new();
    }
    let target = total * t.low as u64 / 100;
    let mut in_use: HashSet<String> = rt.list().into_iter().map(|c| c.spec.image_id).collect();
    let names: Vec<String> = wanted
        .lock()
        .map(|w| w.values().flatten().cloned().collect())
        .unwrap_or_default();
    in_use.extend(names.iter().filter_map(|n| rt.find_image(n)).map(|i| i.id));
    let now = jiff::Timestamp::now().as_second();
    let mut unused: Vec<tug_runtime::Image> = rt
        .list_images()
        .into_iter()
        .filter(|i| !in_use.contains(&i.id))
        .filter(|i| now - i.last_used >= t.min_age.as_secs() as i64)
        .collect();
    unused.sort_by_key(|i| i.last_used);
    let mut freed = 0u64;
    let mut removed = Vec::new();
    for image in unused {
        if used.saturating_sub(freed) <= target {
            break;
        }
        match rt.remove_image(&image.id) {
            Ok(()) => {
                tracing::info!(image = %image.id, names = ?image.names, bytes = image.size, "image garbage collection removed an unused image");
                freed += image.size;
                removed.push(image.id);
            }
            Err(e) => {
                tracing::warn!(image = %image.id, error = %format!("{e:#}"), "image garbage collection could not remove an image")
            }
        }
    }
    removed
}

/// Runs a pass shortly after start and then every `period`, until dropped.
pub async fn run(rt: Arc<dyn Runtime>, t: Thresholds, period: Duration, wanted: Wanted) {
    tokio::time::sleep(Duration::from_secs(5).min(period)).await;
    loop {
        let (rt2, wanted2) = (rt.clone(), wanted.clone());
        let _ = tokio::task::spawn_blocking(move || collect(rt2.as_ref(), t, &wanted2)).await;
        tokio::time::sleep(period).await;
    }
}
