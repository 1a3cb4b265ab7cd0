//! The image store on disk:
//!
//! ```text
//! DIR/blobs/sha256/<hex>   manifests, configurations and compressed layers, by digest
//! DIR/layers/<hex>/        each layer unpacked once, by diff ID, shared between images
//! DIR/images.json          the images: names, configuration, layers
//! ```

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::layer::{self, Hashing};
use super::manifest::{Descriptor, Document, ImageConfigBlob, RunConfig};
use super::reference::Reference;

/// An image in the store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The digest of its configuration (`sha256:…`), as `docker images --digests` shows it.
    pub id: String,
    /// Canonical references naming it (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// `name@sha256:<manifest digest>`: what a pod's status reports as imageID.
    pub repo_digests: Vec<String>,
    /// Diff IDs of its layers, bottom first.
    pub layers: Vec<String>,
    /// Entrypoint, Cmd, Env, WorkingDir and User.
    pub config: RunConfig,
    /// Bytes of its compressed layers.
    pub size: u64,
    /// Seconds since the epoch it was last used to start a container.
    #[serde(default)]
    pub last_used: i64,
}

/// The image store.
pub struct ImageStore {
    root: PathBuf,
    /// The images, and the modification time of images.json they were read at (another
    /// process, `tug image import`, may change it).
    images: Mutex<(Vec<Image>, Option<std::time::SystemTime>)>,
}

/// Where a blob's bytes come from while an image is added.
pub trait BlobSource {
    /// The bytes of the blob a descriptor points at.
    fn open(&mut self, desc: &Descriptor) -> anyhow::Result<Box<dyn Read + '_>>;
}

fn hex_of(digest: &str) -> anyhow::Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => Ok(h),
        _ => bail!("unsupported digest {digest:?} (only sha256 is)"),
    }
}

impl ImageStore {
    /// Opens (or creates) the store in `root`.
    pub fn open(root: &Path) -> anyhow::Result<ImageStore> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            std::fs::create_dir_all(root.join(d))
                .with_context(|| format!("creating {}", root.join(d).display()))?;
        }
        // Leftovers of an interrupted pull or import.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
                let _ = std::fs::remove_file(e.path());
            }
        }
        let (images, mtime) = read_index(root)?;
        Ok(ImageStore {
            root: root.to_path_buf(),
            images: Mutex::new((images, mtime)),
        })
    }

    /// A fresh scratch directory inside the store (same filesystem, so renames work).
    pub fn scratch(&self) -> anyhow::Result<tempfile_dir::ScratchDir> {
        tempfile_dir::ScratchDir::new(&self.root.join("tmp"))
    }

    /// The directory a layer is unpacked in.
    pub fn layer_dir(&self, diff_id: &str) -> anyhow::Result<PathBuf> {
        Ok(self.root.join("layers").join(hex_of(diff_id)?))
    }

    /// The path of a blob.
    pub fn blob_path(&self, digest: &str) -> anyhow::Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    /// The images, re-read first when another process changed them.
    fn lock(&self) -> ImagesGuard<'_> {
        let mut g = self.images.lock().unwrap_or_else(|p| p.into_inner());
        let mtime = std::fs::metadata(self.root.join("images.json"))
            .and_then(|m| m.modified())
            .ok();
        if mtime != g.1
            && let Ok(fresh) = read_index(&self.root)
        {
            *g = fresh;
        }
        ImagesGuard(g)
    }

    fn save(&self, images: &mut ImagesGuard<'_>) -> anyhow::Result<()> {
        let tmp = self.root.join("images.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&images.0.0)?)?;
        std::fs::rename(&tmp, self.root.join("images.json"))?;
        images.0.1 = std::fs::metadata(self.root.join("images.json"))
            .and_then(|m| m.modified())
            .ok();
        Ok(())
    }

    /// Every image.
    pub fn list(&self) -> Vec<Image> {
        self.lock().to_vec()
    }

    /// The image a reference (or an image ID, or a prefix of one) names.
    pub fn find(&self, name: &str) -> Option<Image> {
        let images = self.lock();
        if let Ok(r) = Reference::parse(name) {
            let canonical = r.to_string();
            if let Some(i) = images
                .iter()
                .find(|i| i.names.contains(&canonical) || i.repo_digests.contains(&canonical))
            {
                return Some(i.clone());
            }
            // name@digest also matches an image pulled by tag with that manifest digest.
            if let Some(d) = &r.digest {
                let wanted = format!("{}@{d}", r.name());
                if let Some(i) = images.iter().find(|i| i.repo_digests.contains(&wanted)) {
                    return Some(i.clone());
                }
            }
        }
        let id = name.strip_prefix("sha256:").unwrap_or(name);
        if id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return images
                .iter()
                .find(|i| i.id.trim_start_matches("sha256:").starts_with(id))
                .cloned();
        }
        None
    }

    /// Records that an image was used now (for garbage collection by age).
    pub fn touch(&self, id: &str) {
        let mut images = self.lock();
        if let Some(i) = images.iter_mut().find(|i| i.id == id) {
            i.last_used = jiff::Timestamp::now().as_second();
            let _ = self.save(&mut images);
        }
    }

    /// Adds an image from its manifest: fetches and verifies the configuration and every
    /// layer not already unpacked, then names it `names`.
    pub fn add(
        &self,
        names: &[String],
        repo_digests: &[String],
        manifest: &Document,
        source: &mut dyn BlobSource,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Image> {
        let config_desc = manifest
            .config
            .as_ref()
            .context("the manifest has no config")?;
        let layers = manifest.layers.clone().unwrap_or_default();
        let config_bytes = read_verified(source, config_desc)?;
        let config: ImageConfigBlob =
            serde_json::from_slice(&config_bytes).context("parsing the image configuration")?;
        if !config.os.is_empty() && config.os != "linux" {
            bail!("the image is for {}, not linux", config.os);
        }
        if !config.architecture.is_empty() && config.architecture != "amd64" {
            bail!("the image is for {}, not amd64", config.architecture);
        }
        let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != layers.len() {
            bail!(
                "the configuration lists {} layers, the manifest {}",
                diff_ids.len(),
                layers.len()
            );
        }
        let mut size = 0;
        for (i, (desc, diff_id)) in layers.iter().zip(&diff_ids).enumerate() {
            size += desc.size;
            let dir = self.layer_dir(diff_id)?;
            if dir.exists() {
                continue;
            }
            progress(&format!(
                "layer {}/{}: {} ({} bytes)",
                i + 1,
                layers.len(),
                desc.digest,
                desc.size
            ));
            let scratch = self.scratch()?;
            let mut blob = Hashing::new(source.open(desc)?);
            let got = layer::unpack(&mut blob, scratch.path())
                .with_context(|| format!("unpacking layer {}", desc.digest))?;
            let blob_digest = blob.finish()?;
            if blob_digest != desc.digest {
                bail!(
                    "layer {} arrived with digest {blob_digest}: corrupt or tampered",
                    desc.digest
                );
            }
            if &got != diff_id {
                bail!(
                    "layer {} unpacked to {got}, expected {diff_id}",
                    desc.digest
                );
            }
            scratch.persist(&dir)?;
        }
        let id = config_desc.digest.clone();
        let image = Image {
            id: id.clone(),
            names: names.to_vec(),
            repo_digests: repo_digests.to_vec(),
            layers: diff_ids,
            config: config.config.unwrap_or_default(),
            size,
            last_used: jiff::Timestamp::now().as_second(),
        };
        let mut images = self.lock();
        // A name moves to the new image.
        for other in images.iter_mut() {
            other.names.retain(|n| !names.contains(n));
        }
        let image = match images.iter_mut().find(|i| i.id == id) {
            Some(existing) => {
                for n in names {
                    if !existing.names.contains(n) {
                        existing.names.push(n.clone());
                    }
                }
                for d in repo_digests {
                    if !existing.repo_digests.contains(d) {
                        existing.repo_digests.push(d.clone());
                    }
                }
                existing.clone()
            }
            None => {
                images.push(image.clone());
                image
            }
        };
        // Images left without a name or digest are gone.
        images.retain(|i| !i.names.is_empty() || !i.repo_digests.is_empty());
        self.save(&mut images)?;
        drop(images);
        self.collect_layers(&HashSet::new())?;
        Ok(image)
    }

    /// Removes an image (by name or ID) unless `in_use` holds its ID; returns it.
    pub fn remove(&self, name: &str, in_use: &HashSet<String>) -> anyhow::Result<Image> {
        let Some(image) = self.find(name) else {
            bail!("no image {name:?} (see `tug image ls`)");
        };
        if in_use.contains(&image.id) {
            bail!("image {name:?} is used by a container; delete its pods first");
        }
        let mut images = self.lock();
        images.retain(|i| i.id != image.id);
        self.save(&mut images)?;
        drop(images);
        self.collect_layers(in_use)?;
        Ok(image)
    }

    /// Deletes unpacked layers no image refers to.
    fn collect_layers(&self, _in_use: &HashSet<String>) -> anyhow::Result<()> {
        let wanted: HashSet<String> = self
            .lock()
            .iter()
            .flat_map(|i| i.layers.iter())
            .filter_map(|d| hex_of(d).ok().map(str::to_string))
            .collect();
        for e in std::fs::read_dir(self.root.join("layers"))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !wanted.contains(&name) {
                tracing::debug!(layer = %name, "removing an unused layer");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    /// Bytes used by unpacked layers.
    pub fn disk_usage(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(p) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.root.join("layers"))
    }
}

type Images = (Vec<Image>, Option<std::time::SystemTime>);

/// The locked image list.
struct ImagesGuard<'a>(std::sync::MutexGuard<'a, Images>);

impl std::ops::Deref for ImagesGuard<'_> {
    type Target = Vec<Image>;
    fn deref(&self) -> &Vec<Image> {
        &self.0.0
    }
}

impl std::ops::DerefMut for ImagesGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vec<Image> {
        &mut self.0.0
    }
}

fn read_index(root: &Path) -> anyhow::Result<Images> {
    let index = root.join("images.json");
    let mtime = std::fs::metadata(&index).and_then(|m| m.modified()).ok();
    let images = match std::fs::read(&index) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", index.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", index.display())),
    };
    Ok((images, mtime))
}

/// Reads a small blob (a manifest or a configuration) and checks its digest.
pub fn read_verified(source: &mut dyn BlobSource, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut r = Hashing::new(source.open(desc)?);
    r.read_to_end(&mut bytes)?;
    let digest = r.finish()?;
    if digest != desc.digest {
        bail!("blob {} arrived with digest {digest}", desc.digest);
    }
    Ok(bytes)
}

/// Scratch directories that vanish unless persisted.
pub mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop unless [`ScratchDir::persist`] moved it.
    pub struct ScratchDir {
        path: Option<PathBuf>,
    }

    impl ScratchDir {
        /// A fresh directory under `parent`.
        pub fn new(parent: &Path) -> anyhow::Result<ScratchDir> {
            use rand::Rng;
            let name: String = (0..16)
                .map(|_| char::from(b"0123456789abcdef"[rand::rng().random_range(0..16)]))
                .collect();
            let path = parent.join(name);
            std::fs::create_dir_all(&path)?;
            Ok(ScratchDir { path: Some(path) })
        }

        /// Its path.
        pub fn path(&self) -> &Path {
            self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
        }

        /// Moves it to `dest` (which must not exist).
        pub fn persist(mut self, dest: &Path) -> anyhow::Result<()> {
            if let Some(p) = self.path.take()
                && let Err(e) = std::fs::rename(&p, dest)
            {
                let _ = std::fs::remove_dir_all(&p);
                if !dest.exists() {
                    return Err(e.into());
                }
            }
            Ok(())
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            if let Some(p) = self.path.take() {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}
