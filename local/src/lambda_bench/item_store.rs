//! A small in-memory DynamoDB for the stub: tables keyed by a string hash key `id` (as both of template.yaml's
//! tables are), items kept in DynamoDB's JSON form (`{"status": {"S": "scheduled"}}`), and the parts of the
//! expression language the functions use: conditions (`=`, `<>`, `<`, `<=`, `>`, `>=`, `AND`, `OR`, `NOT`,
//! parentheses, `attribute_exists`, `attribute_not_exists`, `begins_with`) and updates (`SET` with `+`/`-` and
//! `if_not_exists`, `REMOVE`, `ADD` on numbers and sets, `DELETE` on sets), top-level attributes only.
//! Anything else is a [`StoreError::Invalid`] (the stub answers `ValidationException`).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// An item, or a key: attribute name → typed value (`{"S": …}`, `{"N": …}`, `{"SS": […]}`, …).
pub type Item = Map<String, Value>;

/// Every table's hash key.
pub const KEY: &str = "id";

#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// The write's condition did not hold (`ConditionalCheckFailedException`).
    ConditionFailed,
    /// A transaction was cancelled; per item `None` or `ConditionalCheckFailed`.
    Cancelled(Vec<&'static str>),
    /// A request the store cannot answer (`ValidationException`).
    Invalid(String),
}

fn invalid<T>(why: impl Into<String>) -> Result<T, StoreError> {
    Err(StoreError::Invalid(why.into()))
}

/// The tables: name → (key → item).
#[derive(Debug, Default)]
pub struct ItemStore {
    tables: HashMap<String, HashMap<String, Item>>,
}

/// A write worked out but not applied yet (so a transaction applies all or nothing).
struct Planned {
    table: String,
    key: String,
    old: Option<Item>,
    /// `None`: the item is deleted.
    new: Option<Item>,
}

impl ItemStore {
    /// Stores `item` as it is (a fixture).
    pub fn insert(&mut self, table: &str, item: Item) -> Result<(), StoreError> {
        let key = key_of(&item)?;
        self.tables
            .entry(table.to_string())
            .or_default()
            .insert(key, item);
        Ok(())
    }

    pub fn item(&self, table: &str, key: &str) -> Option<&Item> {
        self.tables.get(table)?.get(key)
    }

    /// Every item of `table` (in no order).
    pub fn items(&self, table: &str) -> Vec<&Item> {
        self.tables
            .get(table)
            .map(|t| t.values().collect())
            .unwrap_or_default()
    }

    /// `GetItem`'s answer.
    pub fn get_item(&self, request: &Value) -> Result<Value, StoreError> {
        let table = table_name(request)?;
        let key = key_of(object(&request["Key"], "Key")?)?;
        Ok(match self.item(table, &key) {
            Some(item) => json!({"Item": item}),
            None => json!({}),
        })
    }

    /// `PutItem`, `UpdateItem` or `DeleteItem`'s answer (with `ReturnValues` `NONE`, `ALL_OLD` or `ALL_NEW`).
    pub fn write(&mut self, operation: &str, request: &Value) -> Result<Value, StoreError> {
        let planned = self.plan(operation, request)?;
        let returned = match request["ReturnValues"].as_str().unwrap_or("NONE") {
            "NONE" => None,
            "ALL_OLD" => planned.old.clone(),
            "ALL_NEW" => planned.new.clone(),
            other => return invalid(format!("ReturnValues {other} is not supported")),
        };
        self.apply(planned);
        Ok(match returned {
            Some(item) => json!({"Attributes": item}),
            None => json!({}),
        })
    }

    /// `TransactWriteItems`: every write's condition holds and all apply, or none does.
    pub fn transact_write(&mut self, request: &Value) -> Result<Value, StoreError> {
        let items = request["TransactItems"]
            .as_array()
            .ok_or_else(|| StoreError::Invalid("no TransactItems".into()))?;
        let mut planned = Vec::new();
        let mut reasons = Vec::new();
        let mut failed = false;
        for entry in items {
            let (operation, inner) = match object(entry, "TransactItem")?.iter().next() {
                Some((op, inner)) => (op.as_str(), inner),
                None => return invalid("an empty TransactItem"),
            };
            let operation = match operation {
                "Put" => "PutItem",
                "Update" => "UpdateItem",
                "Delete" => "DeleteItem",
                "ConditionCheck" => "ConditionCheck",
                other => return invalid(format!("unknown transaction item {other}")),
            };
            match self.plan(operation, inner) {
                Ok(p) => {
                    let duplicate = planned
                        .iter()
                        .any(|q: &Planned| q.table == p.table && q.key == p.key);
                    if duplicate {
                        return invalid(
                            "Transaction request cannot include multiple operations on one item",
                        );
                    }
                    reasons.push("None");
                    if operation != "ConditionCheck" {
                        planned.push(p);
                    }
                }
                Err(StoreError::ConditionFailed) => {
                    reasons.push("ConditionalCheckFailed");
                    failed = true;
                }
                Err(e) => return Err(e),
            }
        }
        if failed {
            return Err(StoreError::Cancelled(reasons));
        }
        for p in planned {
            self.apply(p);
        }
        Ok(json!({}))
    }

    fn plan(&self, operation: &str, request: &Value) -> Result<Planned, StoreError> {
        let table = table_name(request)?.to_string();
        let names = strings(&request["ExpressionAttributeNames"])?;
        let values = request["ExpressionAttributeValues"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let scope = Scope {
            names: &names,
            values: &values,
        };
        let (key, new_from_request) = match operation {
            "PutItem" => {
                let item = object(&request["Item"], "Item")?.clone();
                (key_of(&item)?, Some(item))
            }
            _ => (key_of(object(&request["Key"], "Key")?)?, None),
        };
        let old = self.item(&table, &key).cloned();
        if let Some(condition) = request["ConditionExpression"].as_str() {
            let empty = Item::new();
            let parsed = Parser::new(condition)?.condition_expression()?;
            if !parsed.holds(old.as_ref().unwrap_or(&empty), &scope)? {
                return Err(StoreError::ConditionFailed);
            }
        }
        let new = match operation {
            "PutItem" => new_from_request,
            "DeleteItem" => None,
            "ConditionCheck" => old.clone(),
            "UpdateItem" => {
                let mut item = old.clone().unwrap_or_else(|| {
                    let mut fresh = Item::new();
                    fresh.insert(KEY.into(), json!({"S": key}));
                    fresh
                });
                if let Some(update) = request["UpdateExpression"].as_str() {
                    for action in Parser::new(update)?.update_expression()? {
                        action.apply(&mut item, &scope)?;
                    }
                }
                Some(item)
            }
            other => return invalid(format!("{other} is not a write")),
        };
        Ok(Planned {
            table,
            key,
            old,
            new,
        })
    }

    fn apply(&mut self, p: Planned) {
        let table = self.tables.entry(p.table).or_default();
        match p.new {
            Some(item) => table.insert(p.key, item),
            None => table.remove(&p.key),
        };
    }
}

fn table_name(request: &Value) -> Result<&str, StoreError> {
    request["TableName"]
        .as_str()
        .ok_or_else(|| StoreError::Invalid("no TableName".into()))
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Item, StoreError> {
    v.as_object()
        .ok_or_else(|| StoreError::Invalid(format!("no {what}")))
}

fn strings(v: &Value) -> Result<HashMap<String, String>, StoreError> {
    let Some(map) = v.as_object() else {
        return Ok(HashMap::new());
    };
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => invalid(format!("{k} is not a name")),
        })
        .collect()
}

/// The string `id` of an item or key.
fn key_of(item: &Item) -> Result<String, StoreError> {
    match item.get(KEY).and_then(|v| v["S"].as_str()) {
        Some(k) => Ok(k.to_string()),
        None => invalid(format!("the key must be the string attribute {KEY}")),
    }
}

/// The names (`#x`) and values (`:x`) an expression refers to.
struct Scope<'a> {
    names: &'a HashMap<String, String>,
    values: &'a Item,
}

impl Scope<'_> {
    fn name(&self, token: &str) -> Result<String, StoreError> {
        match token.strip_prefix('#') {
            Some(_) => self.names.get(token).cloned().ok_or_else(|| {
                StoreError::Invalid(format!("{token} is not in ExpressionAttributeNames"))
            }),
            None => Ok(token.to_string()),
        }
    }

    fn value(&self, token: &str) -> Result<Value, StoreError> {
        self.values.get(token).cloned().ok_or_else(|| {
            StoreError::Invalid(format!("{token} is not in ExpressionAttributeValues"))
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An attribute name (plain or `#alias`) or a keyword / function name.
    Word(String),
    /// `:value`
    Value(String),
    Symbol(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, StoreError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        if let Some(sym) = ["<>", "<=", ">="].into_iter().find(|s| *s == two) {
            out.push(Token::Symbol(sym));
            i += 2;
            continue;
        }
        if let Some(sym) = ["(", ")", ",", "=", "<", ">", "+", "-"]
            .into_iter()
            .find(|s| s.starts_with(c))
        {
            out.push(Token::Symbol(sym));
            i += 1;
            continue;
        }
        if c == '.' || c == '[' {
            return invalid("nested attribute paths are not supported by the bench stub");
        }
        let start = i;
        if c == ':' || c == '#' {
            i += 1;
        }
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i == start || (i == start + 1 && (c == ':' || c == '#')) {
            return invalid(format!("unexpected {c:?} in an expression"));
        }
        let word: String = chars[start..i].iter().collect();
        out.push(match c {
            ':' => Token::Value(word),
            _ => Token::Word(word),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(String),
    Value(String),
    IfNotExists(String, Box<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Or(Box<Condition>, Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Compare(Operand, &'static str, Operand),
    Exists(String),
    NotExists(String),
    BeginsWith(Operand, Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Set(String, Operand, Option<(&'static str, Operand)>),
    Remove(String),
    Add(String, Operand),
    Delete(String, Operand),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl Parser {
    fn new(text: &str) -> Result<Self, StoreError> {
        Ok(Self {
            tokens: tokenize(text)?,
            at: 0,
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, symbol: &str) -> Result<(), StoreError> {
        match self.next() {
            Some(Token::Symbol(s)) if s == symbol => Ok(()),
            other => invalid(format!("expected {symbol:?}, found {other:?}")),
        }
    }

    fn finished(&self) -> Result<(), StoreError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => invalid(format!("unexpected {t:?} at the end of an expression")),
        }
    }

    fn condition_expression(mut self) -> Result<Condition, StoreError> {
        let c = self.or()?;
        self.finished()?;
        Ok(c)
    }

    fn or(&mut self) -> Result<Condition, StoreError> {
        let mut left = self.and()?;
        while keyword(self.peek(), "OR") {
            self.next();
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, StoreError> {
        let mut left = self.not()?;
        while keyword(self.peek(), "AND") {
            self.next();
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, StoreError> {
        if keyword(self.peek(), "NOT") {
            self.next();
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Condition, StoreError> {
        if self.peek() == Some(&Token::Symbol("(")) {
            self.next();
            let c = self.or()?;
            self.expect(")")?;
            return Ok(c);
        }
        for (function, two) in [
            ("attribute_exists", false),
            ("attribute_not_exists", false),
            ("begins_with", true),
        ] {
            if keyword(self.peek(), function)
                && self.tokens.get(self.at + 1) == Some(&Token::Symbol("("))
            {
                self.at += 2;
                let first = self.operand()?;
                let second = match two {
                    true => {
                        self.expect(",")?;
                        Some(self.operand()?)
                    }
                    false => None,
                };
                self.expect(")")?;
                return match (function, first, second) {
                    ("attribute_exists", Operand::Path(p), None) => Ok(Condition::Exists(p)),
                    ("attribute_not_exists", Operand::Path(p), None) => Ok(Condition::NotExists(p)),
                    ("begins_with", a, Some(b)) => Ok(Condition::BeginsWith(a, b)),
                    _ => invalid(format!("{function} takes an attribute")),
                };
            }
        }
        let left = self.operand()?;
        let op = match self.next() {
            Some(Token::Symbol(s)) if ["=", "<>", "<", "<=", ">", ">="].contains(&s) => s,
            other => return invalid(format!("expected a comparison, found {other:?}")),
        };
        Ok(Condition::Compare(left, op, self.operand()?))
    }

    /// A path or a `:value`, or `if_not_exists(path, operand)`.
    fn operand(&mut self) -> Result<Operand, StoreError> {
        match self.next() {
            Some(Token::Value(v)) => Ok(Operand::Value(v)),
            Some(Token::Word(w))
                if w.eq_ignore_ascii_case("if_not_exists")
                    && self.peek() == Some(&Token::Symbol("(")) =>
            {
                self.next();
                let Operand::Path(path) = self.operand()? else {
                    return invalid("if_not_exists takes an attribute first");
                };
                self.expect(",")?;
                let fallback = self.operand()?;
                self.expect(")")?;
                Ok(Operand::IfNotExists(path, Box::new(fallback)))
            }
            Some(Token::Word(w)) => Ok(Operand::Path(w)),
            other => invalid(format!("expected an attribute or a value, found {other:?}")),
        }
    }

    fn path(&mut self) -> Result<String, StoreError> {
        match self.operand()? {
            Operand::Path(p) => Ok(p),
            other => invalid(format!("expected an attribute, found {other:?}")),
        }
    }

    fn update_expression(mut self) -> Result<Vec<Action>, StoreError> {
        let mut actions = Vec::new();
        while let Some(token) = self.next() {
            let clause = match token {
                Token::Word(w) => w.to_ascii_uppercase(),
                other => {
                    return invalid(format!(
                        "expected SET, REMOVE, ADD or DELETE, found {other:?}"
                    ))
                }
            };
            loop {
                let path = self.path()?;
                actions.push(match clause.as_str() {
                    "SET" => {
                        self.expect("=")?;
                        let first = self.operand()?;
                        let rest = match self.peek() {
                            Some(Token::Symbol(s @ ("+" | "-"))) => {
                                let s = *s;
                                self.next();
                                Some((s, self.operand()?))
                            }
                            _ => None,
                        };
                        Action::Set(path, first, rest)
                    }
                    "REMOVE" => Action::Remove(path),
                    "ADD" => Action::Add(path, self.operand()?),
                    "DELETE" => Action::Delete(path, self.operand()?),
                    other => return invalid(format!("unknown update clause {other}")),
                });
                if self.peek() != Some(&Token::Symbol(",")) {
                    break;
                }
                self.next();
            }
        }
        if actions.is_empty() {
            return invalid("an empty update expression");
        }
        Ok(actions)
    }
}

impl Operand {
    /// Its value in `item`; `None` for a missing attribute.
    fn resolve(&self, item: &Item, scope: &Scope) -> Result<Option<Value>, StoreError> {
        match self {
            Operand::Path(p) => Ok(item.get(&scope.name(p)?).cloned()),
            Operand::Value(v) => scope.value(v).map(Some),
            Operand::IfNotExists(p, fallback) => match item.get(&scope.name(p)?) {
                Some(v) => Ok(Some(v.clone())),
                None => fallback.resolve(item, scope),
            },
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    v["N"].as_str()?.parse().ok()
}

/// `a + b` or `a - b` of two `N` values, written as DynamoDB does (integers without a fraction).
fn arithmetic(a: &Value, op: &str, b: &Value) -> Result<Value, StoreError> {
    let (Some(x), Some(y)) = (a["N"].as_str(), b["N"].as_str()) else {
        return invalid("arithmetic needs numbers");
    };
    if let (Ok(x), Ok(y)) = (x.parse::<i128>(), y.parse::<i128>()) {
        let r = if op == "+" { x + y } else { x - y };
        return Ok(json!({"N": r.to_string()}));
    }
    match (x.parse::<f64>(), y.parse::<f64>()) {
        (Ok(x), Ok(y)) => Ok(json!({"N": (if op == "+" { x + y } else { x - y }).to_string()})),
        _ => invalid("not a number"),
    }
}

/// `a op b` as DynamoDB compares: same types only, numbers by value, strings by their bytes.
fn compare(a: &Value, op: &str, b: &Value) -> bool {
    let ordering = match (number(a), number(b), a["S"].as_str(), b["S"].as_str()) {
        (Some(x), Some(y), _, _) => x.partial_cmp(&y),
        (_, _, Some(x), Some(y)) => Some(x.cmp(y)),
        _ if op == "=" => return a == b,
        _ if op == "<>" => return a != b,
        _ => None,
    };
    let Some(o) = ordering else { return false };
    match op {
        "=" => o.is_eq(),
        "<>" => o.is_ne(),
        "<" => o.is_lt(),
        "<=" => o.is_le(),
        ">" => o.is_gt(),
        _ => o.is_ge(),
    }
}

impl Condition {
    fn holds(&self, item: &Item, scope: &Scope) -> Result<bool, StoreError> {
        Ok(match self {
            Condition::Or(a, b) => a.holds(item, scope)? || b.holds(item, scope)?,
            Condition::And(a, b) => a.holds(item, scope)? && b.holds(item, scope)?,
            Condition::Not(c) => !c.holds(item, scope)?,
            Condition::Exists(p) => item.contains_key(&scope.name(p)?),
            Condition::NotExists(p) => !item.contains_key(&scope.name(p)?),
            Condition::Compare(a, op, b) => {
                match (a.resolve(item, scope)?, b.resolve(item, scope)?) {
                    (Some(x), Some(y)) => compare(&x, op, &y),
                    // A missing attribute compares as false.
                    _ => false,
                }
            }
            Condition::BeginsWith(a, b) => {
                match (a.resolve(item, scope)?, b.resolve(item, scope)?) {
                    (Some(x), Some(y)) => match (x["S"].as_str(), y["S"].as_str()) {
                        (Some(x), Some(y)) => x.starts_with(y),
                        _ => false,
                    },
                    _ => false,
                }
            }
        })
    }
}

/// `{kind: values}`, e.g. `{"SS": [...]}`.
fn typed(kind: &str, values: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert(kind.to_string(), Value::Array(values));
    Value::Object(m)
}

/// The set type (`SS`, `NS`) of a value.
fn set_of(v: &Value) -> Option<(&'static str, &Vec<Value>)> {
    ["SS", "NS"]
        .into_iter()
        .find_map(|t| v[t].as_array().map(|a| (t, a)))
}

impl Action {
    fn apply(&self, item: &mut Item, scope: &Scope) -> Result<(), StoreError> {
        match self {
            Action::Set(path, first, rest) => {
                let name = scope.name(path)?;
                let Some(mut value) = first.resolve(item, scope)? else {
                    return invalid(format!("SET {name}: the operand is missing"));
                };
                if let Some((op, second)) = rest {
                    let Some(other) = second.resolve(item, scope)? else {
                        return invalid(format!("SET {name}: the operand is missing"));
                    };
                    value = arithmetic(&value, op, &other)?;
                }
                item.insert(name, value);
            }
            Action::Remove(path) => {
                item.remove(&scope.name(path)?);
            }
            Action::Add(path, operand) => {
                let name = scope.name(path)?;
                let Some(value) = operand.resolve(item, scope)? else {
                    return invalid("ADD needs a value");
                };
                let merged = match (item.get(&name), set_of(&value)) {
                    (None, _) => value,
                    (Some(current), None) => arithmetic(current, "+", &value)?,
                    (Some(current), Some((kind, add))) => match set_of(current) {
                        Some((k, have)) if k == kind => {
                            let mut all = have.clone();
                            all.extend(add.iter().filter(|v| !have.contains(v)).cloned());
                            typed(kind, all)
                        }
                        _ => return invalid(format!("ADD {name}: not a set of that type")),
                    },
                };
                item.insert(name, merged);
            }
            Action::Delete(path, operand) => {
                let name = scope.name(path)?;
                let Some(value) = operand.resolve(item, scope)? else {
                    return invalid("DELETE needs a value");
                };
                let Some((kind, gone)) = set_of(&value) else {
                    return invalid("DELETE takes a set");
                };
                let left: Option<Vec<Value>> = match item.get(&name).and_then(set_of) {
                    Some((k, have)) if k == kind => {
                        Some(have.iter().filter(|v| !gone.contains(v)).cloned().collect())
                    }
                    Some(_) => return invalid(format!("DELETE {name}: not a set of that type")),
                    None => None,
                };
                match left {
                    // An empty set is no attribute.
                    Some(l) if l.is_empty() => {
                        item.remove(&name);
                    }
                    Some(l) => {
                        item.insert(name, typed(kind, l));
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> Value {
        let mut v = v;
        v["TableName"] = json!("t");
        v
    }

    fn key(id: &str) -> Value {
        json!({"id": {"S": id}})
    }

    #[test]
    fn put_get_and_conditional_put() {
        let mut store = ItemStore::default();
        let put = request(json!({"Item": {"id": {"S": "a"}, "n": {"N": "1"}},
            "ConditionExpression": "attribute_not_exists(#id)", "ExpressionAttributeNames": {"#id": "id"},
            "ReturnValues": "ALL_OLD"}));
        assert_eq!(store.write("PutItem", &put), Ok(json!({})));
        assert_eq!(
            store.write("PutItem", &put),
            Err(StoreError::ConditionFailed)
        );
        let got = store.get_item(&request(json!({"Key": key("a")}))).unwrap();
        assert_eq!(got["Item"]["n"], json!({"N": "1"}));
        let none = store.get_item(&request(json!({"Key": key("b")}))).unwrap();
        assert_eq!(none, json!({}));
        // Unconditional: replaces, and ALL_OLD answers what was there.
        let replace = request(json!({"Item": {"id": {"S": "a"}}, "ReturnValues": "ALL_OLD"}));
        let old = store.write("PutItem", &replace).unwrap();
        assert_eq!(old["Attributes"]["n"], json!({"N": "1"}));
    }

    #[test]
    fn conditions_as_the_idempotency_claim_writes_them() {
        let mut store = ItemStore::default();
        let claim = |hash: &str, now: u64| {
            request(
                json!({"Item": {"id": {"S": "k"}, "status": {"S": "INPROGRESS"}, "payload_hash": {"S": hash},
                                    "lease_expires_ms": {"N": (now + 1000).to_string()}, "expiration": {"N": "99999999999"}},
                "ConditionExpression": "attribute_not_exists(#id) OR #expiration < :now_s \
                     OR (#status = :in_progress AND #lease < :now_ms AND #hash = :hash)",
                "ExpressionAttributeNames": {"#id": "id", "#expiration": "expiration", "#status": "status",
                                             "#lease": "lease_expires_ms", "#hash": "payload_hash"},
                "ExpressionAttributeValues": {":now_s": {"N": (now / 1000).to_string()}, ":now_ms": {"N": now.to_string()},
                                              ":in_progress": {"S": "INPROGRESS"}, ":hash": {"S": hash}}}),
            )
        };
        assert!(store.write("PutItem", &claim("h", 10_000)).is_ok());
        // The lease is live: refused; once it ran out, the same payload takes it over, another never.
        assert_eq!(
            store.write("PutItem", &claim("h", 10_500)),
            Err(StoreError::ConditionFailed)
        );
        assert_eq!(
            store.write("PutItem", &claim("other", 20_000)),
            Err(StoreError::ConditionFailed)
        );
        assert!(store.write("PutItem", &claim("h", 20_000)).is_ok());
        assert!(matches!(
            store.write(
                "PutItem",
                &request(json!({"Item": {"id": {"S": "k"}}, "ConditionExpression": "#x = :y"}))
            ),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn updates_set_add_remove_and_delete() {
        let mut store = ItemStore::default();
        let take = |limit: u64| {
            request(json!({"Key": key("slot"),
                "UpdateExpression": "ADD #taken :one SET #kind = :kind",
                "ConditionExpression": "attribute_not_exists(#taken) OR #taken < :limit",
                "ExpressionAttributeNames": {"#taken": "taken", "#kind": "kind"},
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":limit": {"N": limit.to_string()}, ":kind": {"S": "slot"}},
                "ReturnValues": "ALL_NEW"}))
        };
        assert_eq!(
            store.write("UpdateItem", &take(2)).unwrap()["Attributes"]["taken"],
            json!({"N": "1"})
        );
        assert!(store.write("UpdateItem", &take(2)).is_ok());
        assert_eq!(
            store.write("UpdateItem", &take(2)),
            Err(StoreError::ConditionFailed)
        );
        assert_eq!(store.item("t", "slot").unwrap()["taken"], json!({"N": "2"}));
        let sets = |expr: &str, c: &str| {
            request(json!({"Key": key("c"), "UpdateExpression": expr,
                "ExpressionAttributeNames": {"#c": "connections", "#n": "n"},
                "ExpressionAttributeValues": {":c": {"SS": [c]}, ":v": {"N": "5"}}}))
        };
        store.write("UpdateItem", &sets("ADD #c :c", "x")).unwrap();
        store.write("UpdateItem", &sets("ADD #c :c", "y")).unwrap();
        store.write("UpdateItem", &sets("ADD #c :c", "x")).unwrap();
        assert_eq!(
            store.item("t", "c").unwrap()["connections"],
            json!({"SS": ["x", "y"]})
        );
        store
            .write("UpdateItem", &sets("DELETE #c :c", "x"))
            .unwrap();
        store
            .write(
                "UpdateItem",
                &sets("SET #n = if_not_exists(#n, :v) - :v", "x"),
            )
            .unwrap();
        assert_eq!(store.item("t", "c").unwrap()["n"], json!({"N": "0"}));
        store
            .write("UpdateItem", &sets("DELETE #c :c", "y"))
            .unwrap();
        store.write("UpdateItem", &sets("REMOVE #n", "y")).unwrap();
        assert_eq!(
            store.item("t", "c").unwrap().len(),
            1,
            "only the key is left"
        );
        store
            .write("DeleteItem", &request(json!({"Key": key("c")})))
            .unwrap();
        assert!(store.item("t", "c").is_none());
    }

    #[test]
    fn a_transaction_applies_all_or_nothing() {
        let mut store = ItemStore::default();
        let reservation = json!({"Put": {"TableName": "t", "Item": {"id": {"S": "r"}, "status": {"S": "requested"}},
            "ConditionExpression": "attribute_not_exists(#id)", "ExpressionAttributeNames": {"#id": "id"}}});
        let slot = |limit: u64| {
            json!({"Update": {"TableName": "t", "Key": key("s"), "UpdateExpression": "ADD #taken :one",
            "ConditionExpression": "attribute_not_exists(#taken) OR #taken < :limit",
            "ExpressionAttributeNames": {"#taken": "taken"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":limit": {"N": limit.to_string()}}}})
        };
        assert!(store
            .transact_write(&json!({"TransactItems": [reservation, slot(1)]}))
            .is_ok());
        assert!(store.item("t", "r").is_some() && store.item("t", "s").is_some());
        // The slot is full: the other reservation is not stored either.
        let other = json!({"Put": {"TableName": "t", "Item": {"id": {"S": "r2"}},
            "ConditionExpression": "attribute_not_exists(#id)", "ExpressionAttributeNames": {"#id": "id"}}});
        let full = store.transact_write(&json!({"TransactItems": [other, slot(1)]}));
        assert_eq!(
            full,
            Err(StoreError::Cancelled(vec![
                "None",
                "ConditionalCheckFailed"
            ]))
        );
        assert!(store.item("t", "r2").is_none(), "nothing applied");
        let again = store.transact_write(&json!({"TransactItems": [reservation, slot(5)]}));
        assert_eq!(
            again,
            Err(StoreError::Cancelled(vec![
                "ConditionalCheckFailed",
                "None"
            ]))
        );
        assert_eq!(store.item("t", "s").unwrap()["taken"], json!({"N": "1"}));
        let twice = store.transact_write(&json!({"TransactItems": [slot(5), slot(5)]}));
        assert!(matches!(twice, Err(StoreError::Invalid(_))));
    }

    #[test]
    fn the_parser_refuses_what_it_does_not_know() {
        for bad in [
            "a.b = :x",
            "#a IN (:x)",
            "size(#a) > :x",
            "#a =",
            "(#a = :x",
            "#a = :x :y",
        ] {
            assert!(
                Parser::new(bad)
                    .and_then(|p| p.condition_expression())
                    .is_err(),
                "{bad}"
            );
        }
        assert!(Parser::new("NOT (#a = :x) AND begins_with(#b, :p)")
            .and_then(|p| p.condition_expression())
            .is_ok());
        for bad in ["", "SET", "SET #a", "FROB #a = :x", "SET #a = :x,"] {
            assert!(
                Parser::new(bad)
                    .and_then(|p| p.update_expression())
                    .is_err(),
                "{bad}"
            );
        }
    }
}
