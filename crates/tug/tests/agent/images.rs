//! Images: pulls from a loopback registry with and without auth, garbage collection.

use super::*;

#[test]
fn images_are_pulled_from_a_loopback_registry_with_and_without_basic_auth() {
    use tug_testkit::registry::Registry;
    let open = Registry::start(None);
    let locked = Registry::start(Some(("puller", "s3cret")));
    let image = tug_testkit::image::busybox(&["sh", "-c", "echo pulled"]);
    open.push("test/busybox", "v1", &image);
    locked.push("test/busybox", "v1", &image);
    let (s, _dir) = cluster();
    let pod = |name: &str, host: &str, tag: &str, secret: Option<&str>| {
        let secrets = secret
            .map(|n| format!("  imagePullSecrets: [{{name: {n}}}]\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n{secrets}  containers:\n  - {{name: app, image: \"{host}/test/busybox:{tag}\", imagePullPolicy: Always}}\n"
        )
    };
    apply(&s, &pod("anonymous", &open.host, "v1", None));
    apply(&s, &pod("missing", &open.host, "nope", None));
    apply(&s, &pod("refused", &locked.host, "v1", None));
    let out = kubectl(
        &s,
        &[
            "create",
            "secret",
            "docker-registry",
            "pull-creds",
            &format!("--docker-server={}", locked.host),
            "--docker-username=puller",
            "--docker-password=s3cret",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apply(
        &s,
        &pod("authorized", &locked.host, "v1", Some("pull-creds")),
    );
    for p in ["anonymous", "authorized"] {
        wait_phase(&s, p, "Succeeded", Duration::from_secs(90));
        assert_eq!(ok(&s, &["logs", p]).trim(), "pulled");
    }
    let image_id = jsonpath(
        &s,
        &["pod", "anonymous"],
        "{.status.containerStatuses[0].imageID}",
    );
    assert_eq!(
        image_id,
        format!("{}/test/busybox@{}", open.host, image.digest())
    );
    // A failed pull shows ErrImagePull, then ImagePullBackOff until the next attempt (10 s
    // later), which fails the same way: a watch over that cycle sees both, in order.
    let watchers: Vec<_> = ["missing", "refused"]
        .into_iter()
        .map(|p| {
            let kubeconfig = s.kubeconfig.clone();
            std::thread::spawn(move || {
                (p, watched_reasons(&kubeconfig, p, Duration::from_secs(25)))
            })
        })
        .collect();
    for w in watchers {
        let (p, seen) = w.join().expect("watcher");
        let err = seen.iter().position(|r| r == "ErrImagePull");
        let backoff = seen.iter().rposition(|r| r == "ImagePullBackOff");
        assert!(
            matches!((err, backoff), (Some(e), Some(b)) if e < b),
            "{p}: expected ErrImagePull then ImagePullBackOff, saw {seen:?}; status {}",
            jsonpath(&s, &["pod", p], "{.status}")
        );
    }
    let message = jsonpath(
        &s,
        &[
            "events",
            "--field-selector",
            "involvedObject.name=refused,reason=Failed",
        ],
        "{.items[0].message}",
    );
    assert!(message.contains("imagePullSecret"), "{message}");
}

#[test]
fn image_garbage_collection_removes_unused_images_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let agent_dir = data.join("agent");
    // Two images (their configurations differ), sharing their one layer.
    for (name, cmd) in [(IMAGE, "sh"), ("docker.io/library/spare:1", "true")] {
        let archive = dir.path().join("image.tar");
        tug_testkit::image::write_oci_archive(&archive, name, &[cmd]);
        let out = Command::new(tug_bin!())
            .args(["image", "import"])
            .arg(&archive)
            .arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(&agent_dir)
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut args = agent_args();
    // Collect whenever anything is on disk, every second, images unused for 10 s.
    for a in [
        "--image-gc-high-threshold",
        "0",
        "--image-gc-low-threshold",
        "0",
        "--image-gc-period",
        "1",
        "--image-gc-min-age",
        "10",
    ] {
        args.push(a.to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = TugServer::start_with(tug_bin!(), &data, &argv);
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: user}\nspec:\n  containers:\n  - {name: c, image: busybox:test, imagePullPolicy: Never, command: [sleep, \"3600\"]}\n",
    );
    wait_phase(&s, "user", "Running", Duration::from_secs(60));
    let images = || {
        let out = Command::new(tug_bin!())
            .args(["image", "ls", "--data-dir"])
            .arg(&agent_dir)
            .output()
            .expect("image ls");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_until(
        "the unused image to be collected",
        Duration::from_secs(60),
        || !images().contains("spare"),
    );
    assert!(
        images().contains("busybox:test"),
        "the image in use stays: {}",
        images()
    );
}
