//! Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI and projected
//! (files written with their modes, swapped in atomically on update; service account tokens
//! asked for and renewed), and claims on hostPath or local volumes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, ServiceAccountTokenProjection, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};

/// Why a volume could not be set up: the message goes into the pod's events and status.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// The host directory (or file) backing each of a pod's volumes, by volume name.
pub type Mounted = BTreeMap<String, PathBuf>;

/// Sets up every volume of a pod under `pod_dir/volumes` and returns where each is.
pub async fn setup(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<Mounted, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = Mounted::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in volumes {
        let path = setup_one(client, pod, &ns, &v, pod_dir).await?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// Rewrites the volumes whose content comes from the API (configMap, secret, downwardAPI,
/// projected), so that updates reach running containers; unchanged files are left alone.
pub async fn refresh(client: &kube::Client, pod: &Pod, pod_dir: &Path) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let from_api = v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some();
        if from_api && let Err(e) = setup_one(client, pod, &ns, &v, pod_dir).await {
            tracing::debug!(volume = %v.name, error = %e, "refreshing a volume failed");
        }
    }
}

/// The bytes of a configMap's keys (data and binaryData); None when it does not exist.
async fn config_map_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, VolumeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(c)) => {
            let mut d: BTreeMap<String, Vec<u8>> = c
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, b) in c.binary_data.unwrap_or_default() {
                d.insert(k, b.0);
            }
            Ok(Some(d))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(VolumeError(format!("reading configmap {name}: {e}"))),
    }
}

/// The bytes of a secret's keys; None when it does not exist.
async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, VolumeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(sec)) => {
            let mut d: BTreeMap<String, Vec<u8>> = sec
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in sec.string_data.unwrap_or_default() {
                d.insert(k, v.into_bytes());
            }
            Ok(Some(d))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(VolumeError(format!("reading secret {name}: {e}"))),
    }
}

/// Unmounts what setup mounted under `pod_dir` (memory-backed emptyDirs), before the pod's
/// directory is removed.
pub fn teardown(pod_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes").join("empty-dir")) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if is_mount_point(&path)
            && let Err(err) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH)
        {
            tracing::warn!(path = %path.display(), error = %err, "unmounting a memory volume failed");
        }
    }
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

/// The size of a memory-backed emptyDir: its sizeLimit, else the pod's memory limit (the sum
/// of its containers'), else the tmpfs default (half the node's memory).
fn memory_volume_size(pod: &Pod, size_limit: Option<&Quantity>) -> Option<u64> {
    let parse = |q: &Quantity| tug_api::quantity::parse(&q.0).map(|b| b.max(0.0) as u64);
    if let Some(limit) = size_limit.and_then(parse) {
        return Some(limit);
    }
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice())?;
    let limits: Option<Vec<u64>> = containers
        .iter()
        .map(|c| {
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"))
                .and_then(parse)
        })
        .collect();
    limits.map(|l| l.iter().sum())
}

/// Mounts a tmpfs of `size` bytes (when given) on `dir`.
fn mount_tmpfs(dir: &Path, size: Option<u64>) -> nix::Result<()> {
    use nix::mount::{MsFlags, mount};
    let mut options = "mode=0777".to_string();
    if let Some(size) = size {
        options.push_str(&format!(",size={size}"));
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
}

/// A token for the pod's service account, as a serviceAccountToken projection asks for it
/// (audience, lifetime, bound to the pod). Tokens are kept in `cache` and asked for again once
/// 80% of their lifetime or 24 hours have passed, as the kubelet's token manager does.
async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    src: &ServiceAccountTokenProjection,
    cache: &Path,
) -> Result<String, String> {
    if let Ok(cached) = std::fs::read_to_string(cache)
        && token_fresh(&cached, jiff::Timestamp::now().as_second())
    {
        return Ok(cached);
    }
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: src
                .audience
                .clone()
                .filter(|a| !a.is_empty())
                .map(|a| vec![a]),
            expiration_seconds: Some(src.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let answer = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| e.to_string())?;
    let token = answer
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or("the API server answered without a token")?;
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(cache, &token)
        .and_then(|()| std::fs::set_permissions(cache, std::fs::Permissions::from_mode(0o600)))
    {
        tracing::debug!(error = %e, "caching a service account token failed");
    }
    Ok(token)
}

/// Whether a JWT may still be used at `now`: less than 80% of its lifetime and less than 24
/// hours have passed since it was issued.
fn token_fresh(token: &str, now: i64) -> bool {
    use base64::Engine;
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return false;
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return false;
    };
    let age = now - iat;
    age >= 0 && age * 5 < (exp - iat) * 4 && age < 24 * 3600
}

/// The files of a downwardAPI volume (or projection).
fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Vec<(String, Vec<u8>, u32)>, VolumeError> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    items
        .iter()
        .map(|i| {
            let value = if let Some(f) = &i.field_ref {
                let m = &pod.metadata;
                let map_text = |map: &Option<BTreeMap<String, String>>| {
                    map.clone()
                        .unwrap_or_default()
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
                        .collect::<String>()
                };
                match f.field_path.as_str() {
                    "metadata.labels" => map_text(&m.labels),
                    "metadata.annotations" => map_text(&m.annotations),
                    other => {
                        crate::containers::field_ref(pod, other).map_err(|e| VolumeError(e.0))?
                    }
                }
            } else if let Some(r) = &i.resource_field_ref {
                let name = r.container_name.clone().unwrap_or_default();
                let c = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == name))
                    .cloned()
                    .unwrap_or_default();
                crate::containers::resource_ref(
                    &c,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                    0,
                )
                .map_err(|e| VolumeError(e.0))?
            } else {
                String::new()
            };
            Ok((
                i.path.clone(),
                value.into_bytes(),
                i.mode.map_or(mode, |m| m as u32),
            ))
        })
        .collect()
}

fn dir_of(pod_dir: &Path, kind: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(kind).join(name)
}

async fn setup_one(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    v: &Volume,
    pod_dir: &Path,
) -> Result<PathBuf, VolumeError> {
    let io =
        |what: &str, e: std::io::Error| VolumeError(format!("volume {:?}: {what}: {e}", v.name));
    if let Some(ed) = &v.empty_dir {
        let dir = dir_of(pod_dir, "empty-dir", &v.name);
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", e))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        if ed.medium.as_deref() == Some("Memory") && !is_mount_point(&dir) {
            mount_tmpfs(&dir, memory_volume_size(pod, ed.size_limit.as_ref()))
                .map_err(|e| VolumeError(format!("volume {:?}: mounting tmpfs: {e}", v.name)))?;
        }
        return Ok(dir);
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => {
                std::fs::create_dir_all(&path).map_err(|e| io("creating", e))?;
            }
            "FileOrCreate" if !path.exists() => {
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p).map_err(|e| io("creating", e))?;
                }
                std::fs::write(&path, b"").map_err(|e| io("creating", e))?;
            }
            "Directory" if !path.is_dir() => {
                return Err(VolumeError(format!(
                    "hostPath type check failed: {} is not a directory",
                    h.path
                )));
            }
            "File" if !path.is_file() => {
                return Err(VolumeError(format!(
                    "hostPath type check failed: {} is not a file",
                    h.path
                )));
            }
            _ => {}
        }
        return Ok(path);
    }
    if let Some(cm) = &v.config_map {
        let name = cm.name.clone();
        let data = match config_map_data(client, ns, &name).await? {
            Some(d) => d,
            None if cm.optional == Some(true) => BTreeMap::new(),
            None => {
                return Err(VolumeError(format!(
                    "MountVolume.SetUp failed for volume \"{}\" : configmap \"{name}\" not found",
                    v.name
                )));
            }
        };
        let dir = dir_of(pod_dir, "configmap", &v.name);
        write_atomic(&dir, &project(&data, cm.items.as_deref(), cm.default_mode)?)
            .map_err(|e| io("writing", e))?;
        return Ok(dir);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = match secret_data(client, ns, &name).await? {
            Some(d) => d,
            None if s.optional == Some(true) => BTreeMap::new(),
            None => {
                return Err(VolumeError(format!(
                    "MountVolume.SetUp failed for volume \"{}\" : secret \"{name}\" not found",
                    v.name
                )));
            }
        };
        let dir = dir_of(pod_dir, "secret", &v.name);
        write_atomic(&dir, &project(&data, s.items.as_deref(), s.default_mode)?)
            .map_err(|e| io("writing", e))?;
        return Ok(dir);
    }
    if let Some(d) = &v.downward_api {
        let dir = dir_of(pod_dir, "downward-api", &v.name);
        let files = downward_files(pod, d.items.as_deref().unwrap_or_default(), d.default_mode)?;
        write_atomic(&dir, &files).map_err(|e| io("writing", e))?;
        return Ok(dir);
    }
    if let Some(p) = &v.projected {
        let mut files = Vec::new();
        for (index, src) in p.sources.clone().unwrap_or_default().iter().enumerate() {
            if let Some(cm) = &src.config_map {
                let data = match config_map_data(client, ns, &cm.name).await? {
                    Some(d) => d,
                    None if cm.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(VolumeError(format!("configmap \"{}\" not found", cm.name)));
                    }
                };
                files.extend(project(&data, cm.items.as_deref(), p.default_mode)?);
            }
            if let Some(sec) = &src.secret {
                let data = match secret_data(client, ns, &sec.name).await? {
                    Some(d) => d,
                    None if sec.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(VolumeError(format!("secret \"{}\" not found", sec.name)));
                    }
                };
                files.extend(project(&data, sec.items.as_deref(), p.default_mode)?);
            }
            if let Some(d) = &src.downward_api {
                files.extend(downward_files(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    p.default_mode,
                )?);
            }
            if let Some(t) = &src.service_account_token {
                let cache = pod_dir.join("tokens").join(format!("{}-{index}", v.name));
                let token = service_account_token(client, pod, ns, t, &cache)
                    .await
                    .map_err(|e| {
                        VolumeError(format!(
                            "MountVolume.SetUp failed for volume \"{}\" : failed to fetch token: {e}",
                            v.name
                        ))
                    })?;
                let mode = p.default_mode.unwrap_or(0o644) as u32;
                files.push((t.path.clone(), token.into_bytes(), mode));
            }
        }
        let dir = dir_of(pod_dir, "projected", &v.name);
        write_atomic(&dir, &files).map_err(|e| io("writing", e))?;
        return Ok(dir);
    }
    if let Some(claim) = &v.persistent_volume_claim {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let pvc = pvcs
            .get_opt(&claim.claim_name)
            .await
            .map_err(|e| VolumeError(format!("reading claim {}: {e}", claim.claim_name)))?
            .ok_or_else(|| {
                VolumeError(format!(
                    "persistentvolumeclaim \"{}\" not found",
                    claim.claim_name
                ))
            })?;
        let Some(pv_name) = pvc
            .spec
            .and_then(|s| s.volume_name)
            .filter(|n| !n.is_empty())
        else {
            return Err(VolumeError(format!(
                "persistentvolumeclaim \"{}\" is not bound yet",
                claim.claim_name
            )));
        };
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        let pv = pvs
            .get(&pv_name)
            .await
            .map_err(|e| VolumeError(format!("reading volume {pv_name}: {e}")))?;
        let spec = pv.spec.unwrap_or_default();
        let path = spec
            .host_path
            .map(|h| h.path)
            .or(spec.local.map(|l| l.path))
            .ok_or_else(|| {
                VolumeError(format!(
                    "volume {pv_name}: only hostPath and local persistent volumes can be mounted"
                ))
            })?;
        let path = PathBuf::from(path);
        std::fs::create_dir_all(&path).map_err(|e| io("creating", e))?;
        return Ok(path);
    }
    Err(VolumeError(format!(
        "volume {:?}: this volume type is not supported yet",
        v.name
    )))
}

/// The files of a configMap or secret volume: every key, or the listed items, with modes.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<Vec<(String, Vec<u8>, u32)>, VolumeError> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    match items {
        None => Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), mode))
            .collect()),
        Some(items) => items
            .iter()
            .map(|i| match data.get(&i.key) {
                Some(v) => Ok((i.path.clone(), v.clone(), i.mode.map_or(mode, |m| m as u32))),
                None => Err(VolumeError(format!(
                    "configmap or secret references non-existent key {:?}",
                    i.key
                ))),
            })
            .collect(),
    }
}

/// Writes files the way the kubelet's atomic writer does: into a fresh timestamped directory,
/// then `..data` is swapped to point at it, and each top-level name links through `..data`.
/// Readers never see a half-written set.
pub fn write_atomic(dir: &Path, files: &[(String, Vec<u8>, u32)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let current = std::fs::read_link(dir.join("..data")).ok();
    // Unchanged content: nothing to do.
    if let Some(cur) = &current {
        let cur_dir = dir.join(cur);
        let same = files.iter().all(|(p, bytes, mode)| {
            let f = cur_dir.join(p);
            std::fs::read(&f).is_ok_and(|b| &b == bytes)
                && std::fs::metadata(&f).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        }) && count_files(&cur_dir) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!(
        "..{}",
        jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f")
    );
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755))?;
    for (path, bytes, mode) in files {
        let rel = Path::new(path);
        if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            continue;
        }
        let f = fresh.join(rel);
        if let Some(p) = f.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&f, bytes)?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, dir.join("..data"))?;
    // Top-level names point through ..data.
    let tops: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|(p, _, _)| p.split('/').next().map(str::to_string))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link)?;
        }
    }
    // Names no longer present go, and so does the old data.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if !n.starts_with("..") && !tops.contains(&n) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(cur) = current
        && cur.as_os_str() != stamp.as_str()
    {
        let _ = std::fs::remove_dir_all(dir.join(cur));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_after_80_percent_of_their_lifetime_or_a_day() {
        use base64::Engine;
        let jwt = |iat: i64, exp: i64| {
            let claims = serde_json::json!({"iat": iat, "exp": exp}).to_string();
            format!(
                "h.{}.s",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims)
            )
        };
        assert!(token_fresh(&jwt(1000, 4600), 1000 + 2000));
        assert!(!token_fresh(&jwt(1000, 4600), 1000 + 2881));
        assert!(!token_fresh(&jwt(0, 400_000), 24 * 3600 + 1));
        assert!(!token_fresh("garbage", 0));
    }

    #[test]
    fn atomic_writes_swap_the_whole_set() {
        let dir = tempfile::tempdir().expect("tmp");
        write_atomic(dir.path(), &[("a".into(), b"1".to_vec(), 0o644)]).expect("write");
        assert_eq!(std::fs::read(dir.path().join("a")).expect("a"), b"1");
        write_atomic(dir.path(), &[("b".into(), b"2".to_vec(), 0o400)]).expect("write");
        assert!(!dir.path().join("a").exists(), "a removed key goes");
        assert_eq!(std::fs::read(dir.path().join("b")).expect("b"), b"2");
        let mode = std::fs::metadata(dir.path().join("b"))
            .expect("b")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let stamps = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(stamps, 1, "the old data directory is gone");
    }
}
