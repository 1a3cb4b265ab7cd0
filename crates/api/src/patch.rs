//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902) over JSON values, through the
//! `json-patch` crate, with failures as the API server answers them.

use serde_json::Value;

use crate::ApiError;

/// Applies a JSON merge patch: objects merge recursively, `null` deletes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies a JSON patch (a list of add/remove/replace/move/copy/test operations). All or
/// nothing: on error `doc` is unchanged. A patch that is not a list of operations is a bad
/// request (400); one that does not apply, a failed test included, is Invalid (422), as
/// kube-apiserver answers.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_array() {
        return Err(ApiError::bad_request(
            "a JSON patch must be an array of operations",
        ));
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(doc, &ops).map_err(|e| ApiError::new(422, "Invalid", e.to_string()))
}

/// What [`json_patch_unless_test_fails`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Patched {
    Applied,
    /// A `test` operation failed: nothing was changed.
    TestFailed,
}

/// [`json_patch`] where a failed `test` is not an error but leaves `doc` as it was (as a
/// mutating admission policy's JSONPatch mutation is applied); other failures are the
/// error's text.
pub fn json_patch_unless_test_fails(doc: &mut Value, patch: &Value) -> Result<Patched, String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    match json_patch::patch(doc, &ops) {
        Ok(()) => Ok(Patched::Applied),
        Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => {
            Ok(Patched::TestFailed)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut arr = json!({"a": [1, 2]});
        merge_patch(&mut arr, &json!({"a": [3]}));
        assert_eq!(arr, json!({"a": [3]}));
    }

    #[test]
    fn json_patch_ops_and_atomicity() {
        let mut d = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/spec/list/0", "value": 9},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "test", "path": "/spec/list/2", "value": 3},
                {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
                {"op": "move", "from": "/spec/copy", "path": "/spec/moved"}
            ]),
        )
        .expect("patch applies");
        assert_eq!(d["metadata"]["labels"], json!({"b/c": "2"}));
        assert_eq!(d["spec"]["list"], json!([9, 2, 3]));
        assert_eq!(d["spec"]["moved"], json!([9, 2, 3]));
        let before = d.clone();
        let err = json_patch(
            &mut d,
            &json!([{"op": "remove", "path": "/spec/list/0"}, {"op": "remove", "path": "/nope"}]),
        );
        assert!(err.is_err());
        assert_eq!(d, before, "a failed patch changes nothing");
        assert!(json_patch(&mut d, &json!({"op": "add"})).is_err());
    }
}
