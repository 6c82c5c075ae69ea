//! Configurable, versioned mapping of Genesys events to ServiceNow incidents, in named profiles.
//!
//! A mapping file (JSON, version 2) holds profiles. Each profile is selected by event-type globs (first
//! match wins) and declares variables read from the event body by JSON pointers, text templates with
//! `{{variable}}` placeholders for the incident fields and for the work note a later event of the same
//! conversation adds, the caller phone variable and the impact/urgency rules. See
//! `shared/mappings/default.json`. Version 1 files (one unnamed profile) still load, as a profile that
//! matches every event type and creates one incident per event.
//!
//! Built-in variables: `event_type`, `event_kind`, `event_name`, `event_id`, `organization_id`,
//! `event_timestamp`, `idempotency_key`, `envelope`, `matched_rules`, `profile`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::event::{glob_match, InboundEvent};
use crate::incident::{truncate_chars, IncidentDraft, SHORT_DESCRIPTION_MAX};
use crate::json::{Json, Pointer};
use crate::keys::conversation_key;
use crate::priority::{Levels, PriorityRules, RuleError};
use crate::redact::{
    mask_phone_into, normalise_e164, redact_json, redact_measure, redact_text_into,
};

/// The mapping shipped with the project.
pub const DEFAULT_MAPPING_JSON: &str = include_str!("../mappings/default.json");

const CURRENT_VERSION: u32 = 2;
const BUILTINS: &[&str] = &[
    "event_type",
    "event_kind",
    "event_name",
    "event_id",
    "organization_id",
    "event_timestamp",
    "idempotency_key",
    "envelope",
    "matched_rules",
    "profile",
];
/// Incident columns the mapping sets itself or ServiceNow owns: `extra` may not name them.
const RESERVED_COLUMNS: &[&str] = &[
    "short_description",
    "description",
    "work_notes",
    "contact_type",
    "caller_id",
    "category",
    "subcategory",
    "impact",
    "urgency",
    "priority",
    "correlation_id",
    "correlation_display",
    "sys_id",
    "number",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV2 {
    version: u32,
    #[serde(default)]
    name: Option<String>,
    /// Parsed one by one, so errors can name the profile.
    profiles: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    #[allow(dead_code)]
    version: u32,
    name: String,
    variables: BTreeMap<String, VariableSpec>,
    incident: IncidentTemplates,
    #[serde(default)]
    caller: CallerSpec,
    priority: PriorityRules,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    event_types: Vec<String>,
    /// The variable holding the conversation id: the incident's identity.
    #[serde(default)]
    conversation: Option<String>,
    #[serde(default)]
    on_repeat: OnRepeat,
    variables: BTreeMap<String, VariableSpec>,
    incident: IncidentTemplates,
    #[serde(default)]
    update: Option<UpdateSpec>,
    #[serde(default)]
    caller: CallerSpec,
    priority: PriorityRules,
    /// Ask for a web callback to the caller when the conditions hold (e.g. an escalated call that dropped).
    #[serde(default)]
    callback: Option<CallbackSpec>,
}

/// `"callback": {"queue": "<CALLBACK_QUEUES name>", "when": [conditions, as in priority rules]}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackSpec {
    queue: String,
    when: Vec<crate::priority::Condition>,
}

/// A callback the profile asks for: the caller's number (E.164) in a callback queue, as soon as it has room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAsk {
    pub queue: String,
    pub phone: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableSpec {
    pointers: Vec<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    pii: Pii,
    #[serde(default)]
    format: Format,
    /// For `format: duration`: the unit the event uses; the value becomes milliseconds.
    #[serde(default)]
    unit: Option<Unit>,
}

/// How a variable's text is protected when it is written into a field.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Pii {
    /// Free text: e-mails, SSNs and cards redacted, phone numbers masked, also inside raw numbers, arrays
    /// and objects; in a `number`/`duration` only card numbers.
    #[default]
    Text,
    /// A phone number: masked to its last four digits.
    Phone,
    /// Trusted identifiers.
    None,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Format {
    #[default]
    Raw,
    /// Epoch milliseconds or RFC 3339 → RFC 3339 UTC.
    Timestamp,
    /// A number, also from a numeric string (`"42"`).
    Number,
    /// `true`/`false`, also from `"true"`, `"false"`, `"yes"`, `"no"`, `"1"`, `"0"`.
    Boolean,
    /// A number in `unit`, converted to milliseconds.
    Duration,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Unit {
    Milliseconds,
    Seconds,
    Minutes,
}

impl Unit {
    fn millis(self) -> f64 {
        match self {
            Unit::Milliseconds => 1.0,
            Unit::Seconds => 1000.0,
            Unit::Minutes => 60_000.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentTemplates {
    short_description: String,
    description: String,
    work_notes: String,
    #[serde(default = "phone")]
    contact_type: String,
    category: String,
    subcategory: String,
    correlation_display: String,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

fn phone() -> String {
    "phone".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSpec {
    work_notes: String,
    #[serde(default)]
    raise: Vec<Raise>,
}

/// A level a later event may make more severe (never less).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Raise {
    Impact,
    Urgency,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerSpec {
    #[serde(default)]
    phone_variable: Option<String>,
}

/// What a later event of a conversation that already has an incident does.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnRepeat {
    /// Adds one work note to the conversation's incident.
    #[default]
    Update,
    /// Nothing: the event is recorded as done.
    Ignore,
    /// Creates its own incident (one incident per event).
    NewIncident,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingLoadError {
    #[error("mapping file is invalid at `{path}`: {reason}")]
    Parse { path: String, reason: String },
    #[error("mapping file version {0} is not supported (expected 1 or {CURRENT_VERSION})")]
    Version(u32),
    #[error("mapping file has no profiles")]
    NoProfiles,
    #[error("profile `{profile}`: {problem}")]
    Profile { profile: String, problem: String },
    #[error("could not read mapping file {path}: {reason}")]
    Io { path: String, reason: String },
}

impl MappingLoadError {
    fn profile(profile: &str, problem: impl Into<String>) -> Self {
        MappingLoadError::Profile {
            profile: profile.to_string(),
            problem: problem.into(),
        }
    }
}

/// Mapping failures are permanent: the same event will never map differently.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("profile `{profile}`: required field `{variable}` is missing from the event or not a valid {format} (looked at {pointers})")]
    MissingField {
        profile: String,
        variable: String,
        pointers: String,
        format: &'static str,
    },
    #[error("no mapping profile handles event type `{event_type}`")]
    NoProfile { event_type: String },
}

/// A parsed template part; a variable is still a name.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Var(String),
}

/// Where a compiled template finds a variable's text: the profile's variables by index, or a built-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    User(usize),
    Builtin(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(Slot),
}

/// A compiled template: variables resolved to slots at load time. In a template of several lines, a line
/// whose variables all render empty is left out; a one-line template is always kept.
#[derive(Debug, Clone)]
struct Template {
    lines: Vec<Vec<Piece>>,
}

/// The texts a template reads: the profile's variables (in the profile's order, one after the other in
/// `texts`, each ending at its `ends` entry) and the built-ins (in `BUILTINS` order).
struct Values<'a> {
    texts: &'a str,
    ends: &'a [usize],
    builtins: [&'a str; BUILTINS.len()],
}

impl Values<'_> {
    fn get(&self, slot: Slot) -> &str {
        match slot {
            Slot::User(i) => {
                let start = i.checked_sub(1).and_then(|p| self.ends.get(p)).copied();
                let end = self.ends.get(i).copied();
                end.and_then(|e| self.texts.get(start.unwrap_or(0)..e))
                    .unwrap_or("")
            }
            Slot::Builtin(i) => self.builtins.get(i).copied().unwrap_or(""),
        }
    }
}

#[derive(Debug, Clone)]
struct Variable {
    name: String,
    pointers: Vec<String>,
    compiled: Vec<Pointer>,
    required: bool,
    default: Option<Json<'static>>,
    pii: Pii,
    format: Format,
    unit: Unit,
}

/// One validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    name: String,
    event_types: Vec<String>,
    conversation: Option<String>,
    on_repeat: OnRepeat,
    variables: Vec<Variable>,
    short_description: Template,
    description: Template,
    work_notes: Template,
    contact_type: Template,
    category: Template,
    subcategory: Template,
    correlation_display: Template,
    extra: Vec<(String, Template)>,
    update: Option<Template>,
    raise: Vec<Raise>,
    caller_variable: Option<String>,
    priority: PriorityRules,
    callback: Option<CallbackSpec>,
}

/// A validated mapping file, ready to apply.
#[derive(Debug, Clone)]
pub struct Mapping {
    name: String,
    profiles: Vec<Profile>,
}

/// What an event maps to under its profile. The incident and the work note are rendered on demand: an
/// event needs one or the other, never both.
#[derive(Debug, Clone)]
pub struct Mapped<'m> {
    /// The profile that handled it.
    pub profile: &'m str,
    /// The conversation id, when the profile has one (an identifier, never PII).
    pub conversation_id: Option<String>,
    /// `correlation_id` of the incident: the conversation's key, or the event's when the profile creates
    /// one incident per event.
    pub incident_key: String,
    pub on_repeat: OnRepeat,
    /// Levels a later event may raise on an existing incident.
    pub raise: &'m [Raise],
    levels: Levels,
    matched_rules: Vec<&'m str>,
    caller_phone: Option<String>,
    /// The callback the profile asks for, when its conditions held and the caller's number is known.
    pub callback: Option<CallbackAsk>,
    templates: &'m Profile,
    /// Rendered variable texts, in the profile's order, one after the other, then the built-ins the event
    /// gives (see [`Owned`]): one buffer instead of a string each.
    texts: String,
    /// Where each variable's text ends in `texts`.
    ends: Vec<usize>,
    /// Where each of those built-ins is in `texts`, in [`Owned`] order.
    owned: [(usize, usize); Owned::COUNT],
    envelope: &'static str,
}

/// The built-ins a `Mapped` keeps a copy of in its `texts`, by position in its `owned` spans.
enum Owned {
    EventType,
    Kind,
    EventId,
    OrganizationId,
    Timestamp,
    EventKey,
    MatchedRules,
}

impl Owned {
    const COUNT: usize = 7;
}

impl Mapped<'_> {
    /// Whether later events of the conversation go to the same incident.
    pub fn per_conversation(&self) -> bool {
        self.conversation_id.is_some() && self.on_repeat != OnRepeat::NewIncident
    }

    /// Impact and urgency from the profile's rules.
    pub fn levels(&self) -> Levels {
        self.levels
    }

    fn owned(&self, which: Owned) -> &str {
        let (start, end) = self.owned[which as usize];
        self.texts.get(start..end).unwrap_or("")
    }

    fn values(&self) -> Values<'_> {
        let kind = self.owned(Owned::Kind);
        Values {
            texts: &self.texts,
            ends: &self.ends,
            builtins: [
                self.owned(Owned::EventType),
                kind,
                event_name(kind),
                self.owned(Owned::EventId),
                self.owned(Owned::OrganizationId),
                self.owned(Owned::Timestamp),
                self.owned(Owned::EventKey),
                self.envelope,
                self.owned(Owned::MatchedRules),
                &self.templates.name,
            ],
        }
    }

    /// The incident to create when the conversation has none yet.
    pub fn incident(&self) -> IncidentDraft {
        let p = self.templates;
        let get = self.values();
        IncidentDraft {
            short_description: fitted(
                trimmed(p.short_description.render(&get)),
                SHORT_DESCRIPTION_MAX,
            ),
            description: p.description.render(&get),
            contact_type: p.contact_type.render(&get),
            caller_id: None,
            category: p.category.render(&get),
            subcategory: p.subcategory.render(&get),
            impact: self.levels.impact,
            urgency: self.levels.urgency,
            work_notes: p.work_notes.render(&get),
            correlation_id: self.incident_key.clone(),
            correlation_display: fitted(p.correlation_display.render(&get), 100),
            extra: p
                .extra
                .iter()
                .map(|(k, t)| (k.clone(), t.render(&get)))
                .collect(),
            caller_phone: self.caller_phone.clone(),
            matched_rules: self.matched_rules.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The work note to add to an existing incident (`on_repeat: update`).
    pub fn update_note(&self) -> Option<String> {
        let update = self.templates.update.as_ref()?;
        Some(update.render(&self.values()))
    }
}

impl Mapping {
    pub fn default_mapping() -> Result<Self, MappingLoadError> {
        Self::from_json(DEFAULT_MAPPING_JSON)
    }

    pub fn from_path(path: &str) -> Result<Self, MappingLoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingLoadError::Io {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, MappingLoadError> {
        let raw: Value = serde_json::from_str(text).map_err(|e| MappingLoadError::Parse {
            path: ".".into(),
            reason: e.to_string(),
        })?;
        match raw.get("version").and_then(Value::as_u64) {
            Some(1) => {
                let v1: FileV1 = typed(raw, "")?;
                let profile = ProfileSpec {
                    name: v1.name.clone(),
                    description: None,
                    event_types: vec!["*".into()],
                    conversation: None,
                    on_repeat: OnRepeat::NewIncident,
                    variables: v1.variables,
                    incident: v1.incident,
                    update: None,
                    caller: v1.caller,
                    priority: v1.priority,
                    callback: None,
                };
                Ok(Mapping {
                    name: v1.name,
                    profiles: vec![Profile::compile(profile)?],
                })
            }
            Some(2) => {
                let file: FileV2 = typed(raw, "")?;
                if file.version != CURRENT_VERSION {
                    return Err(MappingLoadError::Version(file.version));
                }
                if file.profiles.is_empty() {
                    return Err(MappingLoadError::NoProfiles);
                }
                let mut profiles: Vec<Profile> = Vec::with_capacity(file.profiles.len());
                let mut names = std::collections::BTreeSet::new();
                for (i, value) in file.profiles.into_iter().enumerate() {
                    let label = value
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("#{}", i + 1));
                    let spec: ProfileSpec = typed(value, &format!("profiles[{i}] `{label}`: "))?;
                    if !names.insert(spec.name.clone()) {
                        return Err(MappingLoadError::profile(
                            &spec.name,
                            "another profile has the same name",
                        ));
                    }
                    let profile = Profile::compile(spec)?;
                    check_overlaps(&profiles, &profile)?;
                    profiles.push(profile);
                }
                Ok(Mapping {
                    name: file.name.unwrap_or_else(|| "mapping".into()),
                    profiles,
                })
            }
            Some(other) => Err(MappingLoadError::Version(other as u32)),
            None => Err(MappingLoadError::Parse {
                path: "version".into(),
                reason: "missing or not a number".into(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The first profile whose event-type globs match the event (its type or its `{id}` form).
    pub fn select(&self, event: &InboundEvent) -> Option<&Profile> {
        let kind = event.event_kind();
        self.profiles
            .iter()
            .find(|p| p.handles(&event.event_type, &kind))
    }

    /// Every profile's event-type globs: the event types this mapping handles.
    pub fn event_types(&self) -> Vec<String> {
        self.profiles
            .iter()
            .flat_map(|p| p.event_types.iter().cloned())
            .collect()
    }

    /// Selects the profile and maps the event; `event_key` is the event's idempotency key.
    pub fn apply(&self, event: &InboundEvent, event_key: &str) -> Result<Mapped<'_>, MappingError> {
        let kind = event.event_kind();
        match self
            .profiles
            .iter()
            .find(|p| p.handles(&event.event_type, &kind))
        {
            Some(profile) => profile.apply_with_kind(event, event_key, kind),
            None => Err(MappingError::NoProfile { event_type: kind }),
        }
    }
}

/// The mapping file a function is configured with (`MAPPING_FILE`), if any.
pub fn mapping_file(env: &crate::config::Env) -> Option<String> {
    env.optional("MAPPING_FILE")
}

/// The mapping in `file` when given, else the built-in one. Every function that maps or filters events
/// loads it the same way, so they agree on the event types.
pub fn load_mapping(file: Option<&str>) -> Result<Mapping, MappingLoadError> {
    match file {
        Some(path) => Mapping::from_path(path),
        None => Mapping::default_mapping(),
    }
}

/// Two profiles may not claim a common event type: which profile maps an event must never depend on the
/// order of the file.
fn check_overlaps(earlier: &[Profile], profile: &Profile) -> Result<(), MappingLoadError> {
    for glob in &profile.event_types {
        for other in earlier {
            // A glob is matched against the event type and its `{id}` form: compare both forms.
            let id_form = |g: &str| g.replace("{id}", "*");
            if let Some(theirs) = other
                .event_types
                .iter()
                .find(|g| globs_intersect(&id_form(g), &id_form(glob)))
            {
                return Err(MappingLoadError::profile(
                    &profile.name,
                    format!(
                        "event type `{glob}` overlaps profile `{}`'s `{theirs}`: an event type may select \
                         one profile only",
                        other.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether some text matches both globs (`*` matches any run of characters).
fn globs_intersect(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // reachable[j]: the prefixes a[..i] and b[..j] can produce a common text.
    let mut reachable = vec![false; b.len() + 1];
    reachable[0] = true;
    for j in 1..=b.len() {
        reachable[j] = reachable[j - 1] && b[j - 1] == '*';
    }
    for i in 1..=a.len() {
        let mut next = vec![false; b.len() + 1];
        next[0] = reachable[0] && a[i - 1] == '*';
        for j in 1..=b.len() {
            next[j] = match (a[i - 1], b[j - 1]) {
                // A star may match nothing, or absorb the other side's next character (or star).
                ('*', _) => reachable[j] || next[j - 1],
                (_, '*') => next[j - 1] || reachable[j],
                (x, y) => x == y && reachable[j - 1],
            };
        }
        reachable = next;
    }
    reachable[b.len()]
}

fn typed<T: serde::de::DeserializeOwned>(value: Value, label: &str) -> Result<T, MappingLoadError> {
    serde_path_to_error::deserialize(value).map_err(|e| MappingLoadError::Parse {
        path: format!("{label}{}", e.path()),
        reason: e.inner().to_string(),
    })
}

/// RFC 6901: starts with `/`, and `~` only as `~0` or `~1`.
fn valid_pointer(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    let b = rest.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

impl Profile {
    fn compile(spec: ProfileSpec) -> Result<Self, MappingLoadError> {
        let name = spec.name.clone();
        let err = |problem: String| MappingLoadError::profile(&name, problem);
        if name.trim().is_empty() {
            return Err(MappingLoadError::Parse {
                path: "profiles[].name".into(),
                reason: "must not be empty".into(),
            });
        }
        if spec.event_types.is_empty() || spec.event_types.iter().any(|g| g.trim().is_empty()) {
            return Err(err("`event_types` needs at least one non-empty glob".into()));
        }
        spec.priority
            .validate()
            .map_err(|e: RuleError| err(format!("priority: {e}")))?;
        let mut variables = Vec::with_capacity(spec.variables.len());
        for (var, v) in &spec.variables {
            if BUILTINS.contains(&var.as_str()) {
                return Err(err(format!("variable `{var}` shadows a built-in variable")));
            }
            if v.pointers.is_empty() {
                return Err(err(format!(
                    "variable `{var}` needs at least one JSON pointer"
                )));
            }
            if let Some(bad) = v.pointers.iter().find(|p| !valid_pointer(p)) {
                return Err(err(format!(
                    "variable `{var}`: `{bad}` is not a JSON pointer (it starts with `/`; `~` only as `~0` or `~1`)"
                )));
            }
            let unit = match (v.format, v.unit) {
                (Format::Duration, Some(u)) => u,
                (Format::Duration, None) => {
                    return Err(err(format!(
                        "variable `{var}`: `format: duration` needs a `unit` (milliseconds, seconds or minutes)"
                    )))
                }
                (_, Some(_)) => {
                    return Err(err(format!(
                        "variable `{var}`: `unit` only applies to `format: duration`"
                    )))
                }
                (_, None) => Unit::Milliseconds,
            };
            // In name order (the spec's map is sorted): `apply` looks variables up by binary search.
            variables.push(Variable {
                name: var.clone(),
                pointers: v.pointers.clone(),
                compiled: v
                    .pointers
                    .iter()
                    .filter_map(|p| Pointer::compile(p))
                    .collect(),
                required: v.required,
                default: v.default.clone().map(Json::from),
                pii: v.pii,
                format: v.format,
                unit,
            });
        }
        let declared = |v: &str| spec.variables.contains_key(v);
        for var in spec.priority.variables() {
            if !declared(var) {
                return Err(err(format!("priority rules use unknown variable `{var}`")));
            }
        }
        if let Some(v) = &spec.caller.phone_variable {
            if !declared(v) {
                return Err(err(format!(
                    "caller.phone_variable names unknown variable `{v}`"
                )));
            }
        }
        if let Some(c) = &spec.callback {
            if spec.caller.phone_variable.is_none() {
                return Err(err(
                    "`callback` needs `caller.phone_variable`: the number to call back".into(),
                ));
            }
            if spec.conversation.is_none() {
                return Err(err(
                    "`callback` needs `conversation`: one callback per conversation".into(),
                ));
            }
            if c.queue.trim().is_empty() || c.when.is_empty() {
                return Err(err(
                    "`callback` needs a `queue` and at least one `when` condition".into(),
                ));
            }
            if let Some(unknown) = c.when.iter().map(|w| w.var.as_str()).find(|v| !declared(v)) {
                return Err(err(format!(
                    "callback conditions use unknown variable `{unknown}`"
                )));
            }
        }
        if let Some(v) = &spec.conversation {
            match spec.variables.get(v) {
                None => return Err(err(format!("conversation names unknown variable `{v}`"))),
                Some(s) if !s.required => {
                    return Err(err(format!(
                        "conversation variable `{v}` must be `required: true` (an incident needs its conversation)"
                    )))
                }
                Some(s) if s.format != Format::Raw => {
                    return Err(err(format!(
                        "conversation variable `{v}` must keep its raw value (no `format`): it is an identifier"
                    )))
                }
                Some(_) => {}
            }
        }
        let slot = |name: &str| -> Option<Slot> {
            variables
                .iter()
                .position(|v| v.name == name)
                .map(Slot::User)
                .or_else(|| BUILTINS.iter().position(|b| *b == name).map(Slot::Builtin))
        };
        let compile = |field: &str, text: &str| -> Result<Template, MappingLoadError> {
            let parsed = parse_template(text)
                .map_err(|_| err(format!("template for `{field}` has an unclosed `{{{{`")))?;
            Template::resolve(parsed, slot).map_err(|unknown| {
                err(format!(
                    "template for `{field}` uses unknown variable `{unknown}`"
                ))
            })
        };
        let i = &spec.incident;
        let mut extra = Vec::with_capacity(i.extra.len());
        for (column, text) in &i.extra {
            if RESERVED_COLUMNS.contains(&column.as_str()) {
                return Err(err(format!(
                    "incident.extra may not set `{column}`: the mapping or ServiceNow owns it"
                )));
            }
            extra.push((column.clone(), compile(&format!("extra.{column}"), text)?));
        }
        let (update, raise) = match (&spec.update, spec.on_repeat) {
            (Some(_), _) if spec.conversation.is_none() => {
                return Err(err(
                    "`update` needs `conversation`: without a conversation there is nothing to update"
                        .into(),
                ))
            }
            (Some(u), OnRepeat::Update) => (
                Some(compile("update.work_notes", &u.work_notes)?),
                u.raise.clone(),
            ),
            (None, OnRepeat::Update) if spec.conversation.is_some() => {
                return Err(err(
                    "`on_repeat: update` needs an `update` section with `work_notes`".into(),
                ))
            }
            (Some(_), _) if spec.conversation.is_none() => return Err(err(
                "`update` needs `conversation`: without a conversation there is nothing to update"
                    .into(),
            )),
            (Some(_), other) => {
                return Err(err(format!(
                    "`update` is set but `on_repeat` is {other:?}: it would never be used"
                )))
            }
            (None, OnRepeat::Ignore) if spec.conversation.is_none() => {
                return Err(err(
                    "`on_repeat: ignore` needs `conversation`: without one, every event is its own incident"
                        .into(),
                ))
            }
            (None, _) => (None, Vec::new()),
        };
        Ok(Profile {
            short_description: compile("short_description", &i.short_description)?,
            description: compile("description", &i.description)?,
            work_notes: compile("work_notes", &i.work_notes)?,
            contact_type: compile("contact_type", &i.contact_type)?,
            category: compile("category", &i.category)?,
            subcategory: compile("subcategory", &i.subcategory)?,
            correlation_display: compile("correlation_display", &i.correlation_display)?,
            extra,
            update,
            raise,
            caller_variable: spec.caller.phone_variable.clone(),
            conversation: spec.conversation.clone(),
            on_repeat: if spec.conversation.is_some() {
                spec.on_repeat
            } else {
                OnRepeat::NewIncident
            },
            event_types: spec.event_types,
            variables,
            priority: spec.priority,
            callback: spec.callback,
            name: spec.name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }

    pub fn on_repeat(&self) -> OnRepeat {
        self.on_repeat
    }

    /// Whether the profile may ask for callbacks (and so needs a callback requests queue).
    pub fn asks_for_callbacks(&self) -> bool {
        self.callback.is_some()
    }

    fn handles(&self, event_type: &str, kind: &str) -> bool {
        self.event_types
            .iter()
            .any(|g| glob_match(g, kind) || glob_match(g, event_type))
    }

    /// Maps `event`. `event_key` is the event's own idempotency key: the incident's `correlation_id` when
    /// the profile has no conversation.
    pub fn apply(&self, event: &InboundEvent, event_key: &str) -> Result<Mapped<'_>, MappingError> {
        self.apply_with_kind(event, event_key, event.event_kind())
    }

    fn apply_with_kind(
        &self,
        event: &InboundEvent<'_>,
        event_key: &str,
        kind: String,
    ) -> Result<Mapped<'_>, MappingError> {
        let mut values: Vec<Cow<'_, Json<'_>>> = Vec::with_capacity(self.variables.len());
        // The variables' texts, then the built-ins kept from the event (its type twice: as sent and as kind).
        let mut texts =
            String::with_capacity(512 + 2 * event.event_type.len() + event_key.len() + 128);
        let mut ends = Vec::with_capacity(self.variables.len());
        for var in &self.variables {
            let found = var
                .compiled
                .iter()
                .filter_map(|p| p.resolve(&event.body))
                .filter(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()))
                .find_map(|v| convert(v, var));
            let value = match (found, &var.default) {
                (Some(v), _) => v,
                (None, _) if var.required => {
                    return Err(MappingError::MissingField {
                        profile: self.name.clone(),
                        variable: var.name.clone(),
                        pointers: var.pointers.join(", "),
                        format: var.format.label(),
                    })
                }
                (None, Some(d)) => Cow::Borrowed(d),
                (None, None) => Cow::Owned(Json::Null),
            };
            render_into(&mut texts, &value, var);
            ends.push(texts.len());
            values.push(value);
        }
        // A profile has a few variables: a scan comparing lengths first beats a binary search of strings.
        let get = |name: &str| {
            self.variables
                .iter()
                .position(|v| v.name.len() == name.len() && v.name == name)
                .and_then(|i| values.get(i))
                .map(|v| v.as_ref())
        };
        let (levels, matched) = self.priority.evaluate(get);
        let conversation_id = self.conversation.as_deref().and_then(get).map(|v| match v {
            Json::String(s) => s.trim().to_string(),
            other => other.to_string(),
        });
        let incident_key = match (&conversation_id, self.on_repeat) {
            (Some(id), OnRepeat::Update | OnRepeat::Ignore) => conversation_key(id),
            _ => event_key.to_string(),
        };
        let caller_phone = self
            .caller_variable
            .as_deref()
            .and_then(get)
            .and_then(Json::as_str)
            .and_then(normalise_e164);
        let callback = self.callback.as_ref().and_then(|c| {
            let holds = c
                .when
                .iter()
                .all(|w| get(w.var.as_str()).is_some_and(|v| w.test.holds(v)));
            Some(CallbackAsk {
                queue: c.queue.clone(),
                phone: caller_phone.clone()?,
            })
            .filter(|_| holds)
        });
        let mut owned = [(0, 0); Owned::COUNT];
        let mut keep = |which: Owned, text: &str| {
            let start = texts.len();
            texts.push_str(text);
            owned[which as usize] = (start, texts.len());
        };
        keep(Owned::EventType, &event.event_type);
        keep(Owned::Kind, &kind);
        keep(Owned::EventId, event.event_id.as_deref().unwrap_or("none"));
        keep(
            Owned::OrganizationId,
            event.organization_id.as_deref().unwrap_or_default(),
        );
        keep(
            Owned::Timestamp,
            event.timestamp.as_deref().unwrap_or_default(),
        );
        keep(Owned::EventKey, event_key);
        // The matched rules' names, joined in place.
        let start = texts.len();
        for (i, name) in matched.iter().enumerate() {
            texts.push_str(if i == 0 { "" } else { ", " });
            texts.push_str(name);
        }
        if matched.is_empty() {
            texts.push_str("none");
        }
        owned[Owned::MatchedRules as usize] = (start, texts.len());
        Ok(Mapped {
            profile: &self.name,
            conversation_id,
            incident_key,
            on_repeat: self.on_repeat,
            raise: &self.raise,
            levels,
            matched_rules: matched,
            caller_phone,
            callback,
            templates: self,
            texts,
            ends,
            owned,
            envelope: event.kind.as_str(),
        })
    }
}

impl Format {
    fn label(self) -> &'static str {
        match self {
            Format::Raw => "value",
            Format::Timestamp => "timestamp",
            Format::Number => "number",
            Format::Boolean => "boolean",
            Format::Duration => "duration",
        }
    }
}

/// `text` without surrounding white space, reusing its buffer.
fn trimmed(mut text: String) -> String {
    let end = text.trim_end().len();
    text.truncate(end);
    let start = text.len() - text.trim_start().len();
    text.drain(..start);
    text
}

/// `text` cut to `max` characters (see [`truncate_chars`]), reusing its buffer when it fits.
fn fitted(text: String, max: usize) -> String {
    if text.len() <= max {
        text
    } else {
        truncate_chars(&text, max)
    }
}

/// `v2.detail.events.conversation.{id}.customer.end` → `customer.end`; other types stay whole.
fn event_name(kind: &str) -> &str {
    kind.rsplit_once("{id}.").map_or(kind, |(_, name)| name)
}

/// The value in the variable's format, or `None` when it does not have that format.
fn convert<'v, 'a>(v: &'v Json<'a>, var: &Variable) -> Option<Cow<'v, Json<'a>>> {
    let number = |v: &Json<'_>| match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    };
    match var.format {
        Format::Raw | Format::Timestamp => Some(Cow::Borrowed(v)),
        Format::Number => number(v).map(json_number).map(Cow::Owned),
        Format::Boolean => match v {
            Json::Bool(b) => Some(*b),
            Json::Number(n) => n.as_f64().map(|x| x != 0.0),
            Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" => Some(true),
                "false" | "no" | "n" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
        .map(|b| Cow::Owned(Json::Bool(b))),
        Format::Duration => number(v)
            .map(|x| json_number(x * var.unit.millis()))
            .map(Cow::Owned),
    }
}

/// Whole numbers as integers (`420000`, not `420000.0`).
fn json_number(x: f64) -> Json<'static> {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Json::Number((x as i64).into())
    } else {
        serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
    }
}

/// Appends the variable's text: formatted, then protected as its `pii` says.
fn render_into(out: &mut String, value: &Json<'_>, var: &Variable) {
    let mut stamp = [0u8; 64];
    let formatted = match var.format {
        Format::Timestamp => format_timestamp(value, &mut stamp),
        _ => None,
    };
    let is_timestamp = formatted.is_some();
    let mut digits = itoa::Buffer::new();
    let plain: Cow<'_, str> = match (formatted, value) {
        (Some(f), _) => Cow::Borrowed(f),
        (None, Json::Null) => Cow::Borrowed(""),
        (None, Json::String(s)) => Cow::Borrowed(s.as_ref()),
        (None, Json::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        // Integers as `serde_json` writes them (with `itoa`), without a string of their own.
        (None, Json::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Cow::Borrowed(digits.format(u)),
            (None, Some(i)) => Cow::Borrowed(digits.format(i)),
            (None, None) => Cow::Owned(n.to_string()),
        },
        (None, other) => Cow::Owned(other.to_string()),
    };
    match var.pii {
        Pii::None => out.push_str(&plain),
        Pii::Phone if plain.is_empty() => {}
        Pii::Phone => mask_phone_into(&plain, out),
        Pii::Text => match (value, var.format) {
            (Json::String(_), _) => redact_text_into(&plain, out),
            // A measure: a 7-digit duration is no phone number, but a card number is still taken out.
            (Json::Number(n), Format::Number | Format::Duration) => {
                out.push_str(redact_measure(n).as_deref().unwrap_or(&plain))
            }
            (Json::Bool(_) | Json::Null, _) => out.push_str(&plain),
            _ if is_timestamp => out.push_str(&plain),
            // Raw numbers, arrays and objects: every string, key and integer in them.
            _ => out.push_str(&redact_json(&value.to_value())),
        },
    }
}

/// The value as an RFC 3339 UTC timestamp, written into `buf` (no allocation).
fn format_timestamp<'b>(v: &Json<'_>, buf: &'b mut [u8; 64]) -> Option<&'b str> {
    use time::format_description::well_known::Rfc3339;
    let dt = match v {
        Json::Number(n) => {
            let ms = n.as_i64()?;
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?
        }
        Json::String(s) => match s.trim().parse::<i64>() {
            Ok(ms) => {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?
            }
            Err(_) => time::OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?,
        },
        _ => return None,
    };
    // A time whose UTC form leaves the years `time` holds (`9999-12-31T23:59:59-01:00`) is not a timestamp.
    let utc = dt.checked_to_offset(time::UtcOffset::UTC)?;
    // What is left of the buffer says what was written: `format_into`'s count leaves out the fraction's digits.
    let size = buf.len();
    let left = {
        let mut room: &mut [u8] = buf;
        utc.format_into(&mut room, &Rfc3339).ok()?;
        room.len()
    };
    let written = size - left;
    std::str::from_utf8(buf.get(..written)?).ok()
}

/// Splits a template into lines of text and `{{variable}}` parts; `Err` when a `{{` is not closed.
fn parse_template(text: &str) -> Result<Vec<Vec<Segment>>, ()> {
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let mut segs = Vec::new();
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                segs.push(Segment::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(())?;
            segs.push(Segment::Var(after[..end].trim().to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            segs.push(Segment::Text(rest.to_string()));
        }
        lines.push(segs);
    }
    Ok(lines)
}

impl Template {
    /// Resolves every variable name to its slot; `Err` names the first unknown variable.
    fn resolve(
        lines: Vec<Vec<Segment>>,
        slot: impl Fn(&str) -> Option<Slot>,
    ) -> Result<Self, String> {
        let lines = lines
            .into_iter()
            .map(|line| {
                line.into_iter()
                    .map(|seg| match seg {
                        Segment::Text(t) => Ok(Piece::Text(t)),
                        Segment::Var(v) => slot(&v).map(Piece::Var).ok_or(v),
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Template { lines })
    }

    fn render(&self, values: &Values<'_>) -> String {
        let size: usize = self
            .lines
            .iter()
            .flatten()
            .map(|piece| match piece {
                Piece::Text(t) => t.len(),
                Piece::Var(slot) => values.get(*slot).len(),
            })
            .sum();
        let mut out = String::with_capacity(size + self.lines.len());
        let several = self.lines.len() > 1;
        let mut kept = 0;
        for line in &self.lines {
            let start = out.len();
            if kept > 0 {
                out.push('\n');
            }
            let mut has_vars = false;
            let mut all_empty = true;
            for piece in line {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Var(slot) => {
                        let v = values.get(*slot);
                        has_vars = true;
                        all_empty &= v.is_empty();
                        out.push_str(v);
                    }
                }
            }
            if several && has_vars && all_empty {
                out.truncate(start);
            } else {
                kept += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
