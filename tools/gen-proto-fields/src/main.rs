//! Reads the k8s-pb crate's prost structs and prints, for each message, its fields:
//! `M <message>` then `F <tag> <rust name> <label> <type> [<message type>]` lines.

use std::path::{Path, PathBuf};
use std::process::Command;

use syn::punctuated::Punctuated;
use syn::{Expr, Fields, GenericArgument, Item, Lit, Meta, PathArguments, Token, Type};

/// The k8s-pb source directory, from `cargo metadata` of the main workspace.
fn k8s_pb_src() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--offline", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "k8s-pb"))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-pb is not in the workspace's dependency graph");
    Path::new(manifest).parent().expect("crate dir").join("src")
}

/// `io.k8s.api.core.v1` for module path `api::core::v1`.
fn package(module: &[String]) -> String {
    let parts: Vec<String> = module
        .iter()
        .map(|m| m.replace("apiextensions_apiserver", "apiextensions-apiserver").replace("kube_aggregator", "kube-aggregator"))
        .collect();
    format!("io.k8s.{}", parts.join("."))
}

/// The innermost type path of `ty` (through Option, Vec, BTreeMap's value), resolved against
/// the module it appears in.
fn message_type(ty: &Type, module: &[String]) -> Option<String> {
    let Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last()?;
    if let PathArguments::AngleBracketed(args) = &last.arguments {
        let inner = args.args.iter().rev().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })?;
        return message_type(inner, module);
    }
    let mut resolved: Vec<String> = module.to_vec();
    let segs: Vec<String> = tp.path.segments.iter().map(|s| s.ident.to_string()).collect();
    let (name, path) = segs.split_last()?;
    for s in path {
        if s == "super" {
            resolved.pop();
        } else {
            resolved.push(s.clone());
        }
    }
    Some(format!("{}.{name}", package(&resolved)))
}

fn walk(dir: &Path, module: &mut Vec<String>, out: &mut Vec<String>) {
    let file = dir.join("mod.rs");
    if let Ok(src) = std::fs::read_to_string(&file) {
        let parsed = syn::parse_file(&src).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for item in parsed.items {
            let Item::Struct(s) = item else { continue };
            let Fields::Named(fields) = &s.fields else { continue };
            let mut lines = Vec::new();
            for f in &fields.named {
                let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("prost")) else { continue };
                let metas = attr
                    .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                    .expect("prost attribute");
                let (mut kind, mut label, mut tag) = (String::new(), "opt".to_string(), String::new());
                for m in metas {
                    match m {
                        Meta::Path(p) => {
                            let id = p.get_ident().map(|i| i.to_string()).unwrap_or_default();
                            match id.as_str() {
                                "optional" | "required" => {}
                                "repeated" => label = "rep".into(),
                                other => kind = other.to_string(),
                            }
                        }
                        Meta::NameValue(nv) => {
                            let key = nv.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                            let val = match &nv.value {
                                Expr::Lit(l) => match &l.lit {
                                    Lit::Str(s) => s.value(),
                                    _ => String::new(),
                                },
                                _ => String::new(),
                            };
                            match key.as_str() {
                                "tag" => tag = val,
                                "btree_map" | "map" | "hash_map" => {
                                    label = "map".into();
                                    kind = val.replace(' ', "");
                                }
                                "bytes" => kind = "bytes".into(),
                                _ => {}
                            }
                        }
                        Meta::List(_) => {}
                    }
                }
                let name = f.ident.as_ref().map(|i| i.to_string().trim_start_matches("r#").to_string()).unwrap_or_default();
                let msg = if kind == "message" || kind.ends_with(",message") {
                    message_type(&f.ty, module).unwrap_or_default()
                } else {
                    String::new()
                };
                lines.push(format!("F {tag} {name} {label} {kind} {msg}").trim_end().to_string());
            }
            out.push(format!("M {}.{}", package(module), s.ident));
            out.extend(lines);
        }
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    subdirs.sort();
    for sub in subdirs {
        let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        module.push(name);
        walk(&sub, module, out);
        module.pop();
    }
}

fn main() {
    let src = k8s_pb_src();
    let mut out = Vec::new();
    for top in ["api", "apimachinery", "apiextensions_apiserver"] {
        let mut module = vec![top.to_string()];
        walk(&src.join(top), &mut module, &mut out);
    }
    println!("# Generated by tools/gen-proto-fields from the k8s-pb crate; do not edit.");
    for line in out {
        println!("{line}");
    }
}
