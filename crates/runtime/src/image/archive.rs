//! `tug image import`: images from an OCI layout or a `docker save` archive (a tar file).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::layer::Hashing;
use super::manifest::{Descriptor, Document};
use super::reference::Reference;
use super::store::{BlobSource, Image, ImageStore, read_verified};

/// Blobs in an unpacked archive, found by digest.
struct DirSource {
    paths: HashMap<String, PathBuf>,
    root: PathBuf,
}

impl BlobSource for DirSource {
    fn open(&mut self, desc: &Descriptor) -> anyhow::Result<Box<dyn Read + '_>> {
        let path = match self.paths.get(&desc.digest) {
            Some(p) => p.clone(),
            None => {
                let hex = desc
                    .digest
                    .strip_prefix("sha256:")
                    .with_context(|| format!("unsupported digest {}", desc.digest))?;
                self.root.join("blobs/sha256").join(hex)
            }
        };
        Ok(Box::new(std::fs::File::open(&path).with_context(|| {
            format!("the archive has no blob {}", desc.digest)
        })?))
    }
}

/// One entry of a `docker save` manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn digest_of_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut h = Hashing::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    std::io::copy(&mut h, &mut std::io::sink())?;
    let len = h.len;
    Ok((h.finish()?, len))
}

/// Imports every image in the archive at `file`. `name` names the image when the archive
/// doesn't (or renames it).
pub fn import(
    store: &ImageStore,
    file: &Path,
    name: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<Image>> {
    let scratch = store.scratch()?;
    let root = scratch.path().to_path_buf();
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut archive = tar::Archive::new(f);
    archive
        .unpack(&root)
        .with_context(|| format!("{} is not a readable tar archive", file.display()))?;
    let name = name
        .map(|n| Reference::parse(n).map_err(anyhow::Error::msg))
        .transpose()?;
    let mut imported = Vec::new();
    if root.join("index.json").exists() {
        let index: Document = serde_json::from_slice(&std::fs::read(root.join("index.json"))?)
            .context("parsing index.json")?;
        let mut source = DirSource {
            paths: HashMap::new(),
            root: root.clone(),
        };
        for desc in index.manifests.clone().unwrap_or_default() {
            let reference = match (&name, ref_name(&desc)) {
                (Some(n), _) => n.clone(),
                (None, Some(r)) => r,
                (None, None) => bail!(
                    "the archive does not name its image ({}); pass --name",
                    desc.digest
                ),
            };
            let mut manifest_desc = desc.clone();
            let mut manifest: Document =
                serde_json::from_slice(&read_verified(&mut source, &manifest_desc)?)?;
            if manifest.manifests.is_some() {
                manifest_desc = manifest
                    .pick_platform()
                    .context("the image has no linux/amd64 variant")?
                    .clone();
                manifest = serde_json::from_slice(&read_verified(&mut source, &manifest_desc)?)?;
            }
            let repo_digest = format!("{}@{}", reference.name(), manifest_desc.digest);
            imported.push(store.add(
                &[reference.to_string()],
                &[repo_digest],
                &manifest,
                &mut source,
                progress,
            )?);
        }
    } else if root.join("manifest.json").exists() {
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json"))?)
                .context("parsing manifest.json")?;
        let mut source = DirSource {
            paths: HashMap::new(),
            root: root.clone(),
        };
        for entry in entries {
            let mut describe = |rel: &str| -> anyhow::Result<Descriptor> {
                let path = root.join(rel);
                let (digest, size) = digest_of_file(&path)?;
                source.paths.insert(digest.clone(), path);
                Ok(Descriptor {
                    media_type: String::new(),
                    digest,
                    size,
                    platform: None,
                    annotations: Default::default(),
                })
            };
            let config = describe(&entry.config)?;
            let layers = entry
                .layers
                .iter()
                .map(|l| describe(l))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let manifest = Document {
                media_type: String::new(),
                manifests: None,
                config: Some(config),
                layers: Some(layers),
            };
            let names: Vec<String> = match &name {
                Some(n) => vec![n.to_string()],
                None => entry
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| Reference::parse(t).ok().map(|r| r.to_string()))
                    .collect(),
            };
            if names.is_empty() {
                bail!("the archive does not name its image; pass --name");
            }
            imported.push(store.add(&names, &[], &manifest, &mut source, progress)?);
        }
    } else {
        bail!(
            "{} is neither an OCI layout (index.json) nor a docker-archive (manifest.json)",
            file.display()
        );
    }
    Ok(imported)
}

/// The reference an OCI index entry names, if a whole one.
fn ref_name(desc: &Descriptor) -> Option<Reference> {
    let full = desc
        .annotations
        .get("io.containerd.image.name")
        .or_else(|| {
            desc.annotations
                .get("org.opencontainers.image.ref.name")
                .filter(|n| n.contains('/') || n.contains(':'))
        })?;
    Reference::parse(full).ok()
}
