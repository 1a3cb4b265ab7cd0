//! `x-kubernetes-validations`: a custom resource's CEL rules, compiled once and cached, and
//! evaluated where the schema places them with `self` (and `oldSelf` for transition rules on
//! update), reported as the apiextensions server reports them (Kubernetes 1.35 and later:
//! objects and lists are not printed, scalars are).
//!
//! The environment is CEL's standard library with cel-go's string, list, math and encoder
//! extensions, plus the Kubernetes libraries real definitions use: lists (`isSorted`, `sum`,
//! `min`, `max`), regex (`find`, `findAll`), and the `isURL`, `isIP`, `isCIDR` and
//! `isQuantity` checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cel::extractors::This;
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::Value;

use crate::Cause;
use crate::validation::field::{Errors, Path};

/// The standard library with cel-go's extensions.
fn base_env() -> Env {
    let mut env = Env::stdlib();
    for ext in [
        cel::extensions::strings as fn(&mut Env) -> Result<(), cel::DeclarationError>,
        cel::extensions::lists,
        cel::extensions::math,
        cel::extensions::encoders,
    ] {
        // The standard environment declares none of the extensions' names (the library
        // test below evaluates each of them).
        let _ = env.add_extension(ext);
    }
    env
}

/// The environment every rule compiles and runs in.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(base_env())).clone()
}

/// A struct type of a mutating admission policy's expressions: `Object` and its nested
/// field types (`Object.spec`, `Object.spec.template.spec.containers` …), which build apply
/// configurations, and `JSONPatch` (`op`, `path`, `from`, `value`). A constructed value is the
/// map of the fields set.
struct ObjectType {
    r#type: cel::common::types::Type,
}

impl cel::StructType for ObjectType {
    fn get_type(&self) -> &cel::common::types::Type {
        &self.r#type
    }

    fn new_value<'b, 'v>(
        &self,
        fields: std::collections::BTreeMap<String, cel::common::value::CowVal<'b, 'v>>,
    ) -> Result<Box<dyn cel::common::value::Val + 'v>, ExecutionError> {
        let name = self.r#type.name();
        let mut map = HashMap::new();
        for (field, value) in fields {
            if name == "JSONPatch" && !matches!(field.as_str(), "op" | "path" | "from" | "value") {
                return Err(ExecutionError::NoSuchKey(Arc::new(format!(
                    "field `{field}` on struct `JSONPatch`"
                ))));
            }
            let value = Cel::try_from(&*value)?;
            map.insert(cel::objects::Key::String(Arc::new(field)), value);
        }
        Box::<dyn cel::common::value::Val>::try_from(Cel::Map(map.into()))
    }
}

/// The struct type names `sources` construct (`Object.spec{…}`, `JSONPatch{…}`).
fn constructed_types(sources: &[&str]) -> std::collections::BTreeSet<String> {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let Some(re) = RE
        .get_or_init(|| {
            regex::Regex::new(r"\b(JSONPatch|Object(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*\{").ok()
        })
        .as_ref()
    else {
        return Default::default();
    };
    sources
        .iter()
        .flat_map(|s| re.captures_iter(s))
        .map(|c| c[1].split_whitespace().collect::<String>())
        .collect()
}

/// The environment with the struct types `names` registered; made once per set of names.
fn typed_env(names: &std::collections::BTreeSet<String>) -> Arc<Env> {
    if names.is_empty() {
        return env();
    }
    static CACHE: OnceLock<Mutex<HashMap<Vec<String>, Arc<Env>>>> = OnceLock::new();
    let key: Vec<String> = names.iter().cloned().collect();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Ok(c) = cache.lock()
        && let Some(e) = c.get(&key)
    {
        return e.clone();
    }
    let mut e = base_env();
    for name in names {
        // A name the registry refuses (it cannot be, by the pattern) is left undeclared: the
        // expression then reports the type unknown.
        let _ = e.add_type(ObjectType {
            r#type: cel::common::types::Type::new_struct(name.clone()),
        });
    }
    let e = Arc::new(e);
    if let Ok(mut c) = cache.lock() {
        if c.len() > 1_000 {
            c.clear();
        }
        c.insert(key, e.clone());
    }
    e
}

/// A parser of the rules' environment (its macros expanded).
pub(crate) fn parser() -> cel::parser::Parser {
    env().parser()
}

/// Compiles `source`, once per distinct source.
pub fn compile(source: &str) -> Result<Arc<Program>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Ok(c) = cache.lock()
        && let Some(p) = c.get(source)
    {
        return Ok(p.clone());
    }
    let program = Arc::new(env().compile(source).map_err(|e| e.to_string())?);
    if let Ok(mut c) = cache.lock() {
        // A bound on what is kept: definitions' rules are few; anything else recompiles.
        if c.len() > 10_000 {
            c.clear();
        }
        c.insert(source.to_string(), program.clone());
    }
    Ok(program)
}

/// A JSON value as CEL sees it: integers as `int`, other numbers as `double`, objects as
/// maps with string keys.
pub fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => match n.as_u64() {
                Some(u) => Cel::UInt(u),
                None => Cel::Float(n.as_f64().unwrap_or_default()),
            },
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<String, Cel> = m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            Cel::Map(map.into())
        }
    }
}

/// A context with the Kubernetes library functions, made once per object validated; each
/// rule runs in a scope of its own holding `self` and `oldSelf`.
fn library() -> Context<'static, 'static> {
    library_in(env())
}

thread_local! {
    /// [`library`], made once per thread: most evaluations need nothing more, and making
    /// the library (every function boxed and registered) costs more than evaluating a rule.
    static LIBRARY: Context<'static, 'static> = library();
}

/// Runs `f` with this thread's [`library`].
fn with_library<R>(f: impl FnOnce(&Context<'static, 'static>) -> R) -> R {
    LIBRARY.with(f)
}

/// [`library`] in environment `env`.
fn library_in(env: Arc<Env>) -> Context<'static, 'static> {
    let mut ctx = Context::with_env(env);
    // None of these names is declared by the environment (the library test below calls
    // each of them), so adding them does not fail.
    let add = |_added: Result<(), cel::DeclarationError>| {};
    add(
        ctx.add_function("isSorted", |This(list): This<Arc<Vec<Cel>>>| {
            list.as_slice().windows(2).all(|w| w[0] <= w[1])
        }),
    );
    add(ctx.add_function(
        "sum",
        |This(list): This<Arc<Vec<Cel>>>| -> Result<Cel, ExecutionError> {
            let items = list.as_slice();
            if items.iter().all(|v| matches!(v, Cel::Int(_))) {
                let mut total: i64 = 0;
                for v in items {
                    if let Cel::Int(i) = v {
                        total = total.checked_add(*i).ok_or_else(|| {
                            ExecutionError::function_error("sum", "integer overflow")
                        })?;
                    }
                }
                return Ok(Cel::Int(total));
            }
            let mut total = 0.0;
            for v in items {
                match v {
                    Cel::Int(i) => total += *i as f64,
                    Cel::UInt(u) => total += *u as f64,
                    Cel::Float(f) => total += f,
                    other => {
                        return Err(ExecutionError::function_error(
                            "sum",
                            format!("cannot sum {other:?}"),
                        ));
                    }
                }
            }
            Ok(Cel::Float(total))
        },
    ));
    for (name, want_max) in [("min", false), ("max", true)] {
        add(ctx.add_function(
            name,
            move |This(list): This<Arc<Vec<Cel>>>| -> Result<Cel, ExecutionError> {
                let mut best: Option<&Cel> = None;
                for v in list.as_slice() {
                    best = match best {
                        None => Some(v),
                        Some(b) if (v > b) == want_max && v != b => Some(v),
                        keep => keep,
                    };
                }
                best.cloned().ok_or_else(|| {
                    ExecutionError::function_error(
                        if want_max { "max" } else { "min" },
                        "list is empty",
                    )
                })
            },
        ));
    }
    add(ctx.add_function(
        "find",
        |This(s): This<Arc<String>>, re: Arc<String>| -> Result<Cel, ExecutionError> {
            let re = regex::Regex::new(&re)
                .map_err(|e| ExecutionError::function_error("find", e.to_string()))?;
            Ok(Cel::String(Arc::new(
                re.find(&s)
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
            )))
        },
    ));
    add(ctx.add_function(
        "findAll",
        |This(s): This<Arc<String>>, re: Arc<String>| -> Result<Cel, ExecutionError> {
            let re = regex::Regex::new(&re)
                .map_err(|e| ExecutionError::function_error("findAll", e.to_string()))?;
            let all: Vec<Cel> = re
                .find_iter(&s)
                .map(|m| Cel::String(Arc::new(m.as_str().to_string())))
                .collect();
            Ok(Cel::List(Arc::new(all)))
        },
    ));
    add(ctx.add_function("isURL", |s: Arc<String>| is_url(&s)));
    add(ctx.add_function("isIP", |s: Arc<String>| {
        s.parse::<std::net::IpAddr>().is_ok()
    }));
    add(ctx.add_function("isCIDR", |s: Arc<String>| is_cidr(&s)));
    add(ctx.add_function("isQuantity", |s: Arc<String>| {
        crate::quantity::check(&s).is_ok()
    }));
    // Mutating admission policies' JSON pointer escaping: `~` as `~0`, `/` as `~1`.
    add(ctx.add_function("jsonpatch.escapeKey", |s: Arc<String>| {
        s.replace('~', "~0").replace('/', "~1")
    }));
    ctx
}

/// A scope of `lib` for one rule: `self`, and `oldSelf` when there is an old value.
fn scope<'b>(
    lib: &'b Context<'static, 'static>,
    self_: &Value,
    old: Option<&Value>,
) -> Context<'b, 'static> {
    let mut ctx = lib.new_inner_scope();
    ctx.add_variable_from_value("self", to_cel(self_));
    if let Some(old) = old {
        ctx.add_variable_from_value("oldSelf", to_cel(old));
    }
    ctx
}

/// Evaluates `source` with the Kubernetes library and the variables `vars` (JSON values), as
/// the other CEL users of the API server (authentication's claim mappings) need it; the
/// result comes back as JSON (maps, lists, strings, numbers, booleans, null).
pub fn evaluate(source: &str, vars: &[(&str, &Value)]) -> Result<Value, String> {
    let program = compile(source)?;
    with_library(|lib| {
        let mut ctx = lib.new_inner_scope();
        for (name, v) in vars {
            ctx.add_variable_from_value(*name, to_cel(v));
        }
        program
            .execute(&ctx)
            .map_err(|e| e.to_string())
            .and_then(|v| from_cel(&v))
    })
}

/// Several expressions over the same variables (an admission policy's variables,
/// conditions and validations): the library and the variables are made once, not per
/// expression.
pub struct Evaluator<'b> {
    ctx: Context<'b, 'static>,
}

impl Evaluator<'_> {
    /// Sets (or replaces) a variable.
    pub fn set(&mut self, name: &str, v: &Value) {
        self.ctx
            .add_variable_from_value(name.to_string(), to_cel(v));
    }

    /// Evaluates `source`; the result as JSON.
    pub fn eval(&self, source: &str) -> Result<Value, String> {
        compile(source)?
            .execute(&self.ctx)
            .map_err(|e| e.to_string())
            .and_then(|v| from_cel(&v))
    }
}

/// Runs `f` with an [`Evaluator`] holding `vars`.
pub fn with_vars<R>(vars: &[(&str, &Value)], f: impl FnOnce(&mut Evaluator<'_>) -> R) -> R {
    with_types_and_vars(&[], vars, None, f)
}

/// What an admission policy's expression asks the authorizer (`authorizer.group('apps')
/// .resource('deployments').namespace('prod').check('create')`, or `.path('/healthz')`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthzCheck {
    /// Set by `authorizer.serviceAccount(namespace, name)`: check for that account rather
    /// than the requesting user.
    pub service_account: Option<(String, String)>,
    /// A plain path's check (`path`), else a resource's.
    pub path: Option<String>,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub verb: String,
}

/// Decides an [`AuthzCheck`]: whether it is allowed, and why.
pub type Authorize = Arc<dyn Fn(&AuthzCheck) -> (bool, String) + Send + Sync>;

/// The `authorizer` variable: an authorizer value, with `requestResource` the check of the
/// request's own resource.
pub fn authorizer_variable(request_resource: &AuthzCheck) -> Value {
    let mut rr = authz_value(request_resource);
    rr["__authz"] = Value::from("resource");
    serde_json::json!({"__authz": "authorizer", "requestResource": rr})
}

/// An authorizer value (a CEL map marked `__authz`) for a check.
fn authz_value(c: &AuthzCheck) -> Value {
    let mut v = serde_json::json!({"group": c.group, "resource": c.resource,
        "subresource": c.subresource, "namespace": c.namespace, "name": c.name});
    if let Some((ns, name)) = &c.service_account {
        v["serviceAccount"] = serde_json::json!([ns, name]);
    }
    if let Some(p) = &c.path {
        v["path"] = Value::from(p.as_str());
    }
    v
}

/// The check an authorizer value stands for.
fn authz_check(v: &Value) -> AuthzCheck {
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    AuthzCheck {
        service_account: v["serviceAccount"].as_array().and_then(|a| {
            Some((
                a.first()?.as_str()?.to_string(),
                a.get(1)?.as_str()?.to_string(),
            ))
        }),
        path: v["path"].as_str().map(str::to_string),
        group: text("group"),
        resource: text("resource"),
        subresource: text("subresource"),
        namespace: text("namespace"),
        name: text("name"),
        verb: String::new(),
    }
}

/// Kubernetes' CEL authorizer library, deciding with `authorize`: `group`, `resource`,
/// `subresource`, `namespace`, `name`, `path`, `serviceAccount`, `check`, and on a decision
/// `allowed`, `denied`, `reason`, `errored`, `error`.
fn add_authorizer(ctx: &mut Context<'static, 'static>, authorize: Authorize) {
    let add = |_added: Result<(), cel::DeclarationError>| {};
    // The receiver, as JSON, if it is an authorizer value of one of `kinds`.
    fn receiver(target: &Cel, kinds: &[&str], function: &str) -> Result<Value, ExecutionError> {
        let v = from_cel(target).map_err(|e| ExecutionError::function_error(function, e))?;
        match v["__authz"].as_str() {
            Some(k) if kinds.contains(&k) => Ok(v),
            _ => Err(ExecutionError::function_error(
                function,
                format!("no such overload: {function} on this value"),
            )),
        }
    }
    fn to(v: Value, kind: &str) -> Cel {
        let mut v = v;
        v["__authz"] = Value::from(kind);
        to_cel(&v)
    }
    for (function, from, field, kind) in [
        ("group", "authorizer", "group", "group"),
        ("resource", "group", "resource", "resource"),
        ("subresource", "resource", "subresource", "resource"),
        ("namespace", "resource", "namespace", "resource"),
        ("name", "resource", "name", "resource"),
        ("path", "authorizer", "path", "path"),
    ] {
        add(ctx.add_function(
            function,
            move |This(target): This<Cel>, arg: Arc<String>| -> Result<Cel, ExecutionError> {
                let mut v = receiver(&target, &[from, kind], function)?;
                if from == "authorizer" {
                    // A new check keeps only who it is for.
                    v = serde_json::json!({"serviceAccount": v["serviceAccount"]});
                }
                v[field] = Value::from(arg.as_str());
                Ok(to(v, kind))
            },
        ));
    }
    add(ctx.add_function(
        "serviceAccount",
        |This(target): This<Cel>,
         ns: Arc<String>,
         name: Arc<String>|
         -> Result<Cel, ExecutionError> {
            receiver(&target, &["authorizer"], "serviceAccount")?;
            Ok(to(
                serde_json::json!({"serviceAccount": [ns.as_str(), name.as_str()]}),
                "authorizer",
            ))
        },
    ));
    add(ctx.add_function(
        "check",
        move |This(target): This<Cel>, verb: Arc<String>| -> Result<Cel, ExecutionError> {
            let v = receiver(&target, &["resource", "path"], "check")?;
            let mut c = authz_check(&v);
            c.verb = verb.to_string();
            let (allowed, reason) = authorize(&c);
            Ok(to(
                serde_json::json!({"allowed": allowed, "reason": reason}),
                "decision",
            ))
        },
    ));
    for (function, answer) in [
        ("allowed", "allowed"),
        ("denied", "denied"),
        ("reason", "reason"),
        ("errored", "errored"),
        ("error", "error"),
    ] {
        add(ctx.add_function(
            function,
            move |This(target): This<Cel>| -> Result<Cel, ExecutionError> {
                let v = receiver(&target, &["decision"], function)?;
                let allowed = v["allowed"].as_bool().unwrap_or(false);
                Ok(match answer {
                    "allowed" => Cel::Bool(allowed),
                    "denied" => Cel::Bool(!allowed),
                    "reason" => Cel::String(Arc::new(
                        v["reason"].as_str().unwrap_or_default().to_string(),
                    )),
                    "errored" => Cel::Bool(false),
                    _ => Cel::String(Arc::new(String::new())),
                })
            },
        ));
    }
}

/// [`with_vars`] for admission policies: expressions that construct objects (`sources`, a
/// mutating admission policy's) have the `Object…` and `JSONPatch` types they name declared,
/// and with `authorize` the authorizer library decides `authorizer` checks.
pub fn with_types_and_vars<R>(
    sources: &[&str],
    vars: &[(&str, &Value)],
    authorize: Option<Authorize>,
    f: impl FnOnce(&mut Evaluator<'_>) -> R,
) -> R {
    let run = |lib: &Context<'static, 'static>| {
        let mut ev = Evaluator {
            ctx: lib.new_inner_scope(),
        };
        for (name, v) in vars {
            ev.set(name, v);
        }
        f(&mut ev)
    };
    let types = constructed_types(sources);
    if types.is_empty() && authorize.is_none() {
        return with_library(run);
    }
    let mut lib = library_in(typed_env(&types));
    if let Some(authorize) = authorize {
        add_authorizer(&mut lib, authorize);
    }
    run(&lib)
}

/// A CEL value as JSON; types JSON has no form for are an error.
fn from_cel(v: &Cel) -> Result<Value, String> {
    Ok(match v {
        Cel::Null => Value::Null,
        Cel::Bool(b) => Value::Bool(*b),
        Cel::Int(i) => Value::from(*i),
        Cel::UInt(u) => Value::from(*u),
        Cel::Float(f) => Value::from(*f),
        Cel::String(s) => Value::String(s.to_string()),
        Cel::List(l) => Value::Array(l.iter().map(from_cel).collect::<Result<_, _>>()?),
        Cel::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    cel::objects::Key::String(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                out.insert(key, from_cel(v)?);
            }
            Value::Object(out)
        }
        other => {
            return Err(format!(
                "a value of type {:?} has no JSON form",
                other.type_of()
            ));
        }
    })
}

fn is_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.contains(' ')
        }
        None => s.starts_with('/') && !s.contains(' '),
    }
}

/// Whether `s` is an IPv4 or IPv6 CIDR (also the schema's `cidr` format).
pub(crate) fn is_cidr(s: &str) -> bool {
    s.split_once('/').is_some_and(|(ip, bits)| {
        match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        }
    })
}

/// One rule as the schema writes it.
struct Rule<'a> {
    rule: &'a str,
    message: &'a str,
    message_expression: &'a str,
    reason: &'a str,
    field_path: &'a str,
    optional_old_self: bool,
}

impl<'a> Rule<'a> {
    fn of(v: &'a Value) -> Rule<'a> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        Rule {
            rule: text("rule"),
            message: text("message"),
            message_expression: text("messageExpression"),
            reason: text("reason"),
            field_path: text("fieldPath"),
            optional_old_self: v["optionalOldSelf"] == true,
        }
    }

    /// The rule as Go's encoder writes the internal ValidationRule (no JSON tags).
    fn go_json(v: &Value) -> String {
        let r = Rule::of(v);
        let opt = |k: &str| {
            v.get(k)
                .map(Value::to_string)
                .unwrap_or_else(|| "null".into())
        };
        format!(
            "{{\"Rule\":{},\"Message\":{},\"MessageExpression\":{},\"Reason\":{},\"FieldPath\":{},\"OptionalOldSelf\":{}}}",
            Value::from(r.rule),
            Value::from(r.message),
            Value::from(r.message_expression),
            opt("reason"),
            Value::from(r.field_path),
            opt("optionalOldSelf"),
        )
    }
}

/// Whether a rule compares with the old object (a transition rule).
fn uses_old_self(program: &Program) -> bool {
    program.references().has_variable("oldSelf")
}

/// Which rules an evaluation runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Rules that do not read `oldSelf` (on create and update).
    Plain,
    /// Rules that read `oldSelf`, on update, where the old value exists (or the rule says
    /// `optionalOldSelf`).
    Transition,
}

/// Evaluates the rules `schema` holds for `obj` (and `old`, for transition rules).
pub fn validate(obj: &Value, old: Option<&Value>, schema: &Value, pass: Pass) -> Vec<Cause> {
    let mut errs = Errors::default();
    if has_rules(schema) {
        with_library(|lib| walk(lib, obj, old, schema, &Path::new(""), pass, &mut errs));
    }
    errs.0
}

/// Whether a schema holds rules anywhere.
pub fn has_rules(schema: &Value) -> bool {
    if schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
    {
        return true;
    }
    schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.values().any(has_rules))
        || schema.get("items").is_some_and(has_rules)
        || schema
            .get("additionalProperties")
            .filter(|a| a.is_object())
            .is_some_and(has_rules)
}

/// The cause appended when schema errors stop the rules from running.
pub fn not_checked() -> Cause {
    Cause::new(
        "FieldValueInvalid",
        "<nil>",
        "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
    )
}

fn walk(
    lib: &Context<'static, 'static>,
    v: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &Path,
    pass: Pass,
    errs: &mut Errors,
) {
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(lib, v, old, rule, path, pass, errs);
    }
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, s) in props {
                    if let Some(child) = m.get(k) {
                        let old_child = old.and_then(|o| o.get(k));
                        walk(lib, child, old_child, s, &path.child(k), pass, errs);
                    }
                }
            } else if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m {
                    let old_child = old.and_then(|o| o.get(k));
                    walk(lib, child, old_child, s, &path.key(k), pass, errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (i, item) in items.iter().enumerate() {
                    // Old items correlate for map lists (by key) and sets (by value) only.
                    let old_item = match schema["x-kubernetes-list-type"].as_str() {
                        Some("map") if !keys.is_empty() => {
                            old.and_then(Value::as_array).and_then(|o| {
                                o.iter()
                                    .find(|x| keys.iter().all(|k| x.get(*k) == item.get(*k)))
                            })
                        }
                        Some("set") => old
                            .and_then(Value::as_array)
                            .and_then(|o| o.iter().find(|x| *x == item)),
                        _ => None,
                    };
                    walk(lib, item, old_item, s, &path.index(i), pass, errs);
                }
            }
        }
        _ => {}
    }
}

fn check(
    lib: &Context<'static, 'static>,
    v: &Value,
    old: Option<&Value>,
    raw: &Value,
    path: &Path,
    pass: Pass,
    errs: &mut Errors,
) {
    let rule = Rule::of(raw);
    let Ok(program) = compile(rule.rule) else {
        // Refused when the definition was written; nothing to run.
        return;
    };
    let transition = uses_old_self(&program);
    match pass {
        Pass::Plain if transition => return,
        Pass::Transition if !transition => return,
        Pass::Transition if old.is_none() && !rule.optional_old_self => return,
        _ => {}
    }
    let ctx = scope(lib, v, old);
    let at = match rule.field_path.trim_start_matches('.') {
        "" => path.clone(),
        f => path.child(f),
    };
    let at = if at.as_str().is_empty() {
        Path::new("<nil>")
    } else {
        at
    };
    let detail = match program.execute(&ctx) {
        Ok(Cel::Bool(true)) => return,
        Ok(Cel::Bool(false)) => message(&rule, &ctx),
        Ok(other) => format!("rule did not evaluate to a boolean: {other:?}"),
        Err(e) => {
            let what = if rule.message.is_empty() {
                rule.rule
            } else {
                rule.message
            };
            format!("{e} evaluating rule: {what}")
        }
    };
    match rule.reason {
        "FieldValueForbidden" => errs.forbidden(&at, &detail),
        "FieldValueRequired" => errs.required(&at, &detail),
        "FieldValueDuplicate" => errs.duplicate(&at, v),
        _ => match v {
            Value::Object(_) | Value::Array(_) => errs.0.push(Cause::new(
                "FieldValueInvalid",
                at.as_str(),
                format!("Invalid value: {detail}"),
            )),
            scalar => errs.invalid(&at, scalar, &detail),
        },
    }
}

/// The failure's words: what `messageExpression` makes (when it gives a non-empty string of
/// one line), else `message`, else `failed rule: RULE`.
fn message(rule: &Rule, ctx: &Context) -> String {
    if !rule.message_expression.is_empty()
        && let Ok(p) = compile(rule.message_expression)
        && let Ok(Cel::String(s)) = p.execute(ctx)
    {
        let s = s.trim();
        if !s.is_empty() && !s.contains('\n') {
            return s.to_string();
        }
    }
    if !rule.message.is_empty() {
        return rule.message.trim().to_string();
    }
    format!("failed rule: {}", rule.rule.trim())
}

/// The definition-time checks of the rules a schema node holds: each compiles, messages are
/// one line, reasons are known.
pub fn check_rules(schema: &Value, at: &Path, errs: &mut Errors) {
    let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    for (i, raw) in rules.iter().enumerate() {
        let p = at.child("x-kubernetes-validations").index(i);
        let rule = Rule::of(raw);
        if rule.rule.trim().is_empty() {
            errs.required(&p.child("rule"), "rule is not specified");
            continue;
        }
        if raw.get("message").is_some() && rule.message.trim().is_empty() {
            errs.invalid(
                &p.child("message"),
                &Value::from(rule.message),
                "must be non-empty if specified",
            );
        } else if rule.message.contains('\n') {
            errs.invalid(
                &p.child("message"),
                &Value::from(rule.message),
                "must not contain line breaks",
            );
        } else if rule.message.is_empty() && rule.rule.contains('\n') {
            errs.required(
                &p.child("message"),
                "message must be specified if rule contains line breaks",
            );
        }
        if raw.get("messageExpression").is_some() && rule.message_expression.trim().is_empty() {
            errs.required(
                &p.child("messageExpression"),
                "messageExpression must be non-empty if specified",
            );
        }
        if !rule.reason.is_empty()
            && ![
                "FieldValueDuplicate",
                "FieldValueForbidden",
                "FieldValueInvalid",
                "FieldValueRequired",
            ]
            .contains(&rule.reason)
        {
            errs.not_supported(
                &p.child("reason"),
                &Value::from(rule.reason),
                &[
                    "FieldValueDuplicate",
                    "FieldValueForbidden",
                    "FieldValueInvalid",
                    "FieldValueRequired",
                ],
            );
        }
        if let Err(e) = compile(rule.rule) {
            errs.0.push(Cause::new(
                "FieldValueInvalid",
                p.child("rule").as_str(),
                format!(
                    "Invalid value: {}: compilation error: {e}",
                    Rule::go_json(raw)
                ),
            ));
        }
        if !rule.message_expression.trim().is_empty()
            && let Err(e) = compile(rule.message_expression)
        {
            errs.invalid(
                &p.child("messageExpression"),
                &Value::from(rule.message_expression),
                &format!("messageExpression compilation failed: {e}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
            {"rule": "!has(self.mode) || self.mode == oldSelf.mode", "message": "mode is immutable", "reason": "FieldValueForbidden", "fieldPath": ".mode"},
            {"rule": "self.tags.isSorted() && self.tags.all(t, t.matches('^[a-z]+$'))", "messageExpression": "'tags must be sorted, got ' + string(size(self.tags))"},
        ],
        "properties": {
            "minReplicas": {"type": "integer"},
            "maxReplicas": {"type": "integer", "x-kubernetes-validations": [{"rule": "self <= 100"}]},
            "mode": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        }}}})
    }

    fn messages(obj: Value, old: Option<Value>, pass: Pass) -> Vec<String> {
        validate(&obj, old.as_ref(), &schema(), pass)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn the_authorizer_library_asks_its_authorizer() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let authorize: Authorize = Arc::new(move |c: &AuthzCheck| {
            if let Ok(mut s) = seen.lock() {
                s.push(c.clone());
            }
            let allowed = c.service_account.is_none()
                && c.group == "apps"
                && c.resource == "deployments"
                && c.namespace == "prod"
                && c.verb == "create";
            (
                allowed,
                if allowed {
                    "bound".into()
                } else {
                    String::new()
                },
            )
        });
        let authz = authorizer_variable(&AuthzCheck {
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: "prod".into(),
            ..Default::default()
        });
        let results = with_types_and_vars(&[], &[("authorizer", &authz)], Some(authorize), |ev| {
            [
                "authorizer.group('apps').resource('deployments').namespace('prod').check('create').allowed()",
                "authorizer.group('apps').resource('deployments').namespace('dev').check('create').denied()",
                "authorizer.requestResource.check('create').reason()",
                "authorizer.serviceAccount('kube-system', 'x').group('apps').resource('deployments').namespace('prod').check('create').allowed()",
                "authorizer.path('/healthz').check('get').allowed()",
                "authorizer.requestResource.subresource('scale').name('web').check('update').allowed()",
            ]
            .map(|e| ev.eval(e))
        });
        assert_eq!(
            results.map(|r| r.unwrap_or(Value::Null)),
            [
                json!(true),
                json!(true),
                json!("bound"),
                json!(false),
                json!(false),
                json!(false)
            ]
        );
        let asked = asked.lock().map(|a| a.clone()).unwrap_or_default();
        assert_eq!(
            asked[3].service_account,
            Some(("kube-system".into(), "x".into()))
        );
        assert_eq!(asked[4].path.as_deref(), Some("/healthz"));
        assert_eq!(
            (
                asked[5].subresource.as_str(),
                asked[5].name.as_str(),
                asked[5].verb.as_str()
            ),
            ("scale", "web", "update")
        );
    }

    #[test]
    fn mutation_expressions_construct_objects_and_json_patches() {
        let obj = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}});
        let apply = "Object{spec: Object.spec{replicas: object.spec.replicas + 2, \
                     template: Object.spec.template{metadata: Object.spec.template.metadata{\
                     labels: {'team': 'a'}}}}}";
        let patch = "[JSONPatch{op: 'add', path: '/metadata/labels/' + \
                     jsonpatch.escapeKey('example.com/env~x'), value: 'test'}]";
        let bad = "JSONPatch{op: 'add', where: '/x'}";
        let unknown = "Thing{a: 1}";
        let results = with_types_and_vars(&[apply, patch, bad], &[("object", &obj)], None, |ev| {
            [
                ev.eval(apply),
                ev.eval(patch),
                ev.eval(bad),
                ev.eval(unknown),
            ]
        });
        let [apply, patch, bad, unknown] = results;
        assert_eq!(
            apply,
            Ok(
                json!({"spec": {"replicas": 3, "template": {"metadata": {"labels": {"team": "a"}}}}})
            )
        );
        assert_eq!(
            patch,
            Ok(
                json!([{"op": "add", "path": "/metadata/labels/example.com~1env~0x", "value": "test"}])
            )
        );
        assert!(
            bad.is_err_and(|e| e.contains("where")),
            "an unknown JSONPatch field"
        );
        assert!(
            unknown.is_err(),
            "only Object and JSONPatch types are declared"
        );
    }

    #[test]
    fn rules_fail_with_their_messages_where_the_schema_puts_them() {
        let good = json!({"spec": {"minReplicas": 1, "maxReplicas": 3, "tags": ["a", "b"]}});
        assert!(messages(good.clone(), None, Pass::Plain).is_empty());
        assert_eq!(
            messages(
                json!({"spec": {"minReplicas": 500, "maxReplicas": 300, "tags": ["b", "a"]}}),
                None,
                Pass::Plain
            ),
            [
                "spec: Invalid value: minReplicas must not exceed maxReplicas",
                "spec: Invalid value: tags must be sorted, got 2",
                "spec.maxReplicas: Invalid value: 300: failed rule: self <= 100",
            ]
        );
    }

    #[test]
    fn transition_rules_run_on_update_only() {
        let new = json!({"spec": {"minReplicas": 1, "maxReplicas": 3, "tags": [], "mode": "b"}});
        assert!(
            messages(new.clone(), None, Pass::Transition).is_empty(),
            "no old object"
        );
        let old = json!({"spec": {"minReplicas": 1, "maxReplicas": 3, "tags": [], "mode": "a"}});
        assert_eq!(
            messages(new, Some(old), Pass::Transition),
            ["spec.mode: Forbidden: mode is immutable"]
        );
    }

    #[test]
    fn kubernetes_library_functions_evaluate() {
        for (rule, want) in [
            (
                "[3, 1, 2].sum() == 6 && [3, 1, 2].min() == 1 && [3, 1, 2].max() == 3",
                true,
            ),
            (
                "'abc123def'.find('[0-9]+') == '123' && 'a1b22'.findAll('[0-9]+') == ['1', '22']",
                true,
            ),
            (
                "isURL('https://example.com/x') && !isURL('not a url')",
                true,
            ),
            (
                "isIP('10.0.0.1') && isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0/33')",
                true,
            ),
            ("isQuantity('500m') && !isQuantity('5 apples')", true),
            (
                "'Hello'.lowerAscii() == 'hello' && 'a,b'.split(',').size() == 2",
                true,
            ),
            ("self.x.startsWith('ab')", true),
        ] {
            let p = compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            let lib = library();
            let ctx = scope(&lib, &json!({"x": "abc"}), None);
            assert_eq!(p.execute(&ctx), Ok(Cel::Bool(want)), "{rule}");
        }
    }

    #[test]
    fn bad_rules_are_refused_at_definition_time() {
        let mut errs = Errors::default();
        check_rules(
            &json!({"x-kubernetes-validations": [{"rule": "self.a ==", "message": "m"}, {"rule": "true", "reason": "Nope"}]}),
            &Path::new("spec.validation.openAPIV3Schema"),
            &mut errs,
        );
        let m: Vec<String> = errs
            .0
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("spec.validation.openAPIV3Schema.x-kubernetes-validations[0].rule: Invalid value: {\"Rule\":\"self.a ==\",\"Message\":\"m\",\"MessageExpression\":\"\",\"Reason\":null,\"FieldPath\":\"\",\"OptionalOldSelf\":null}: compilation error: "), "{m:?}");
        assert_eq!(
            m[1],
            "spec.validation.openAPIV3Schema.x-kubernetes-validations[1].reason: Unsupported value: \"Nope\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
        );
    }
}
