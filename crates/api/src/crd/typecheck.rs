//! Type checking of CEL expressions against a kind's schema, as a ValidatingAdmissionPolicy's
//! `status.typeChecking` reports it: `object` and `oldObject` have the type of the kind the
//! policy matches, and an expression that selects a field the kind does not have, or applies
//! an operator to operands it has no overload for (`object.spec.replicas > '1'`), is reported
//! as cel-go reports it (`ERROR: <input>:1:22: found no matching overload for '_>_' applied to
//! '(int, string)'`, then the line and a caret).
//!
//! The checker is deliberately partial: whatever it cannot type (other variables, functions
//! it does not know, comprehension results) is `dyn`, which matches everything, so it never
//! reports an expression that cel-go accepts.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo};
use serde_json::{Map, Value};

/// A CEL type as far as the checker knows it.
#[derive(Clone, Debug, PartialEq)]
enum Type<'a> {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    List(Box<Type<'a>>),
    Map(Box<Type<'a>>, Box<Type<'a>>),
    /// An object of the schema, with named properties.
    Object(&'a Value),
}

impl Type<'_> {
    /// The name cel-go gives the type in messages.
    fn name(&self) -> String {
        match self {
            Type::Dyn => "dyn".into(),
            Type::Null => "null_type".into(),
            Type::Bool => "bool".into(),
            Type::Int => "int".into(),
            Type::Uint => "uint".into(),
            Type::Double => "double".into(),
            Type::String => "string".into(),
            Type::Bytes => "bytes".into(),
            Type::List(t) => format!("list({})", t.name()),
            Type::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Type::Object(_) => "object".into(),
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Uint | Type::Double)
    }
}

/// The schemas of one group-version, to follow `$ref`s in.
struct Schemas<'a> {
    defs: &'a Map<String, Value>,
}

impl<'a> Schemas<'a> {
    /// The schema itself, or what its `$ref` (or single `allOf`) names.
    fn resolve(&self, mut s: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let target = s
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .and_then(|n| self.defs.get(n))
                .or_else(|| match s.get("allOf").and_then(Value::as_array) {
                    Some(all) if all.len() == 1 => all.first(),
                    _ => None,
                });
            match target {
                Some(t) => s = t,
                None => break,
            }
        }
        s
    }

    /// The CEL type of values of schema `s`.
    fn type_of(&self, s: &'a Value) -> Type<'a> {
        let s = self.resolve(s);
        if s.get("x-kubernetes-int-or-string").is_some()
            || s.get("x-kubernetes-preserve-unknown-fields").is_some()
        {
            return Type::Dyn;
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => {
                let mut named = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null");
                match (named.next(), named.next()) {
                    (Some(t), None) => t,
                    _ => return Type::Dyn,
                }
            }
            _ => return Type::Dyn,
        };
        // Formatted strings are timestamps, durations and bytes to Kubernetes' CEL.
        let formatted = s.get("format").and_then(Value::as_str).is_some();
        match ty {
            "boolean" => Type::Bool,
            "integer" => Type::Int,
            "number" => Type::Double,
            "string" if formatted => Type::Dyn,
            "string" => Type::String,
            "array" => Type::List(Box::new(
                s.get("items").map_or(Type::Dyn, |i| self.type_of(i)),
            )),
            "object" if s.get("properties").is_some_and(Value::is_object) => Type::Object(s),
            "object" => match s.get("additionalProperties") {
                Some(v) if v.is_object() => {
                    Type::Map(Box::new(Type::String), Box::new(self.type_of(v)))
                }
                _ => Type::Dyn,
            },
            _ => Type::Dyn,
        }
    }
}

/// One problem found, at the expression with id `id`.
struct Issue {
    id: u64,
    message: String,
}

struct Checker<'a> {
    schemas: Schemas<'a>,
    /// `object` and `oldObject`'s type.
    object: Type<'a>,
    /// Comprehension variables in scope, innermost last.
    scope: Vec<(String, Type<'a>)>,
    issues: Vec<Issue>,
}

impl<'a> Checker<'a> {
    fn issue(&mut self, id: u64, message: String) {
        self.issues.push(Issue { id, message });
    }

    fn check(&mut self, e: &IdedExpr) -> Type<'a> {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Type::Bool,
                LiteralValue::Bytes(_) => Type::Bytes,
                LiteralValue::Double(_) => Type::Double,
                LiteralValue::Int(_) => Type::Int,
                LiteralValue::Null => Type::Null,
                LiteralValue::String(_) => Type::String,
                LiteralValue::UInt(_) => Type::Uint,
            },
            Expr::Ident(name) => {
                if let Some((_, t)) = self.scope.iter().rev().find(|(n, _)| n == name) {
                    return t.clone();
                }
                match name.as_str() {
                    "object" | "oldObject" => self.object.clone(),
                    _ => Type::Dyn,
                }
            }
            Expr::Select(sel) => {
                let operand = self.check(&sel.operand);
                if sel.test {
                    return Type::Bool;
                }
                match operand {
                    Type::Object(s) => match s.get("properties").and_then(|p| p.get(&sel.field)) {
                        Some(f) => self.schemas.type_of(f),
                        None => {
                            self.issue(e.id, format!("undefined field '{}'", sel.field));
                            Type::Dyn
                        }
                    },
                    Type::Map(_, v) => *v,
                    _ => Type::Dyn,
                }
            }
            Expr::List(l) => {
                let items: Vec<Type> = l.elements.iter().map(|i| self.check(i)).collect();
                let first = items.first().cloned().unwrap_or(Type::Dyn);
                if items.iter().all(|t| *t == first) {
                    Type::List(Box::new(first))
                } else {
                    Type::List(Box::new(Type::Dyn))
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.check(&me.key);
                        self.check(&me.value);
                    }
                }
                Type::Dyn
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.check(&f.value);
                    }
                }
                Type::Dyn
            }
            Expr::Comprehension(c) => {
                let range = self.check(&c.iter_range);
                // One variable: a list's items, a map's keys; two: index (or key) and value.
                let (first, second) = match (range, c.iter_var2.is_some()) {
                    (Type::List(t), false) => (*t, Type::Dyn),
                    (Type::List(t), true) => (Type::Int, *t),
                    (Type::Map(k, v), _) => (*k, *v),
                    _ => (Type::Dyn, Type::Dyn),
                };
                self.check(&c.accu_init);
                let vars = 2 + usize::from(c.iter_var2.is_some());
                self.scope.push((c.iter_var.clone(), first));
                if let Some(v2) = &c.iter_var2 {
                    self.scope.push((v2.clone(), second));
                }
                self.scope.push((c.accu_var.clone(), Type::Dyn));
                self.check(&c.loop_cond);
                self.check(&c.loop_step);
                self.check(&c.result);
                for _ in 0..vars {
                    self.scope.pop();
                }
                Type::Dyn
            }
            Expr::Call(call) => {
                let target = call.target.as_ref().map(|t| self.check(t));
                let args: Vec<Type> = call.args.iter().map(|a| self.check(a)).collect();
                self.call(e.id, &call.func_name, target, &args)
            }
            Expr::Unspecified => Type::Dyn,
        }
    }

    /// The result of a call, reporting operators applied to operands they have no overload
    /// for; functions the checker does not know give `dyn`.
    fn call(
        &mut self,
        id: u64,
        name: &str,
        target: Option<Type<'a>>,
        args: &[Type<'a>],
    ) -> Type<'a> {
        let no_overload = |me: &mut Self| {
            let names: Vec<String> = args.iter().map(Type::name).collect();
            me.issue(
                id,
                format!(
                    "found no matching overload for '{name}' applied to '({})'",
                    names.join(", ")
                ),
            );
            Type::Dyn
        };
        let concrete = args.iter().all(|t| *t != Type::Dyn);
        match (name, args) {
            ("_+_", [a, b]) if concrete => match (a, b) {
                (Type::List(x), Type::List(y)) => {
                    if x == y {
                        a.clone()
                    } else {
                        Type::List(Box::new(Type::Dyn))
                    }
                }
                (x, y)
                    if x == y
                        && matches!(
                            x,
                            Type::Int | Type::Uint | Type::Double | Type::String | Type::Bytes
                        ) =>
                {
                    x.clone()
                }
                _ => no_overload(self),
            },
            ("_-_" | "_*_" | "_/_", [a, b]) if concrete => {
                if a == b && a.numeric() {
                    a.clone()
                } else {
                    no_overload(self)
                }
            }
            ("_%_", [a, b]) if concrete => {
                if a == b && matches!(a, Type::Int | Type::Uint) {
                    a.clone()
                } else {
                    no_overload(self)
                }
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) if concrete => {
                let comparable = (a.numeric() && b.numeric())
                    || (a == b && matches!(a, Type::String | Type::Bytes | Type::Bool));
                if comparable {
                    Type::Bool
                } else {
                    no_overload(self)
                }
            }
            ("_==_" | "_!=_", [a, b]) if concrete => {
                let scalar =
                    |t: &Type| matches!(t, Type::Bool | Type::String | Type::Bytes) || t.numeric();
                if scalar(a) && scalar(b) && a != b && !(a.numeric() && b.numeric()) {
                    no_overload(self)
                } else {
                    Type::Bool
                }
            }
            ("_&&_" | "_||_", [a, b]) if concrete => {
                if *a == Type::Bool && *b == Type::Bool {
                    Type::Bool
                } else {
                    no_overload(self)
                }
            }
            ("!_", [a]) if concrete => {
                if *a == Type::Bool {
                    Type::Bool
                } else {
                    no_overload(self)
                }
            }
            (
                "_&&_" | "_||_" | "!_" | "@in" | "_<_" | "_<=_" | "_>_" | "_>=_" | "_==_" | "_!=_",
                _,
            ) => Type::Bool,
            ("_[_]", [a, _]) => match a {
                Type::List(t) => (**t).clone(),
                Type::Map(_, v) => (**v).clone(),
                _ => Type::Dyn,
            },
            ("size", _) => Type::Int,
            ("string", _) => Type::String,
            ("int", _) => Type::Int,
            ("uint", _) => Type::Uint,
            ("double", _) => Type::Double,
            ("startsWith" | "endsWith" | "contains" | "matches", _) if target.is_some() => {
                Type::Bool
            }
            _ => Type::Dyn,
        }
    }
}

/// The problems of `source` with `object` of resource `r` (a built-in kind's schema, or a
/// custom resource's), formatted as cel-go's issues; `None` when it checks or `r` has no
/// schema.
pub fn check(source: &str, r: &crate::Resource) -> Option<String> {
    let empty = Map::new();
    let (root, defs) = match r.custom {
        Some(c) => (c.schema.as_ref()?, &empty),
        None => {
            let defs = crate::schema::components(r.group, r.version);
            (
                defs.get(&crate::schema::kind_schema(r.group, r.version, r.kind)?)?,
                defs,
            )
        }
    };
    let (expr, info) = super::cel::parser().parse_with_source_info(source).ok()?;
    let schemas = Schemas { defs };
    let object = schemas.type_of(root);
    let mut checker = Checker {
        schemas,
        object,
        scope: Vec::new(),
        issues: Vec::new(),
    };
    checker.check(&expr);
    if checker.issues.is_empty() {
        return None;
    }
    let mut issues = checker.issues;
    issues.sort_by_key(|i| info.offset_for(i.id).map(|(start, _)| start));
    Some(
        issues
            .iter()
            .map(|i| render(&info, i))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// An issue as cel-go prints it: `ERROR: <input>:LINE:COLUMN: message`, then the line and a
/// caret under the column.
fn render(info: &SourceInfo, issue: &Issue) -> String {
    let start = info.offset_for(issue.id).map_or(0, |(s, _)| s as usize);
    let before = info.source.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let text = info.source[line_start..].lines().next().unwrap_or_default();
    format!(
        "ERROR: <input>:{line}:{column}: {}\n | {text}\n | {}^",
        issue.message,
        ".".repeat(column - 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_confusion_and_unknown_fields_are_reported_as_cel_go_does() {
        let deployments = crate::catalog::lookup("apps", "v1", "deployments").expect("deployments");
        let check = |e: &str| check(e, deployments);
        assert_eq!(check("object.spec.replicas > 1"), None);
        assert_eq!(
            check("object.spec.replicas > '1'").as_deref(),
            Some(
                "ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^"
            )
        );
        assert!(
            check("'wants replicas > 1, got ' + object.spec.replicas")
                .is_some_and(|m| m
                    .contains("found no matching overload for '_+_' applied to '(string, int)'"))
        );
        assert!(
            check("object.spec.replicass > 1")
                .is_some_and(|m| m.contains("undefined field 'replicass'"))
        );
        // What the checker cannot type is dyn: never reported.
        for fine in [
            "object.spec.template.spec.containers.all(c, c.image.startsWith('x'))",
            "has(object.metadata.labels) && 'app' in object.metadata.labels",
            "object.metadata.labels['app'] == 'web'",
            "params.data.max > 1 && variables.x == 'y'",
            "object.spec.template.spec.containers.size() <= 10",
            "object.spec.replicas <= int(params.data.maxReplicas)",
            "object.metadata.creationTimestamp == oldObject.metadata.creationTimestamp",
        ] {
            assert_eq!(check(fine), None, "{fine}");
        }
    }
}
