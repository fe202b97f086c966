//! The QAPI introspection model of QMP: what `query-qmp-schema` says, looked up, checked
//! against, rendered, and produced.
//!
//! QEMU describes its commands, events and their types as a flat JSON array of entities
//! (`SchemaInfo`), each with a `meta-type`: `builtin`, `enum`, `array`, `object`,
//! `alternate`, `command` or `event`. Commands and events keep their real names; other types
//! are masked as decimal strings (`"0"`, `"1"`, ...), builtins keep theirs (`str`, `int`, all
//! integer widths folded into `int`), and arrays are named `[element]`. So the names say
//! little; the references between entities say everything. This crate:
//!
//! * [`model`]: serde types for every entity, lenient on input so newer QEMUs still load;
//! * [`index`]: [`Schema`], which indexes the entities by name and resolves every reference
//!   once, so [`Command`], [`Event`], [`Type`] and friends walk the graph without failing;
//! * [`validate`]: [`Command::validate`] checks `arguments` in the order, and with the exact
//!   texts, of QEMU's input visitor (`Parameter 'foo' is unexpected`, ...);
//! * [`render`]: one-line signatures for help ([`Command::signature`]) and completion
//!   candidates ([`Command::complete_members`], [`Command::complete_values`]);
//! * [`builder`]: [`SchemaBuilder`], with which a server describes its own commands and gets
//!   the `query-qmp-schema` reply in QEMU's format, and a [`Schema`] to validate with.
//!
//! It depends on serde only: no I/O, no async, and nothing of the wire protocol, which
//! changes independently of QAPI.
//!
//! ```
//! use qmpkit_schema::Schema;
//! use serde_json::json;
//!
//! // What QEMU 7.2 sends for human-monitor-command, cut down to the entities it uses.
//! let schema = Schema::from_value(json!([
//!     {"name": "human-monitor-command", "meta-type": "command",
//!      "arg-type": "226", "ret-type": "str"},
//!     {"name": "226", "meta-type": "object", "members": [
//!         {"name": "command-line", "type": "str"},
//!         {"name": "cpu-index", "type": "int", "default": null}]},
//!     {"name": "str", "meta-type": "builtin", "json-type": "string"},
//!     {"name": "int", "meta-type": "builtin", "json-type": "int"},
//! ]))?;
//!
//! let hmc = schema.command("human-monitor-command").unwrap();
//! assert_eq!(hmc.signature(), "human-monitor-command(command-line: str, cpu-index?: int) -> str");
//! assert_eq!(hmc.complete_members(&[]), ["command-line", "cpu-index"]);
//!
//! // The same verdict and text QEMU gives:
//! let err = hmc.validate(json!({"command-line": 42}).as_object()).unwrap_err();
//! assert_eq!(err.desc(), "Invalid parameter type for 'command-line', expected: string");
//! assert_eq!(hmc.validate(None).unwrap_err().desc(), "Parameter 'command-line' is missing");
//! # Ok::<(), qmpkit_schema::SchemaError>(())
//! ```

#![forbid(unsafe_code)]

pub mod builder;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod model;
pub mod render;
pub mod validate;

pub use builder::{
    AlternateDef, Args, BuildError, Builtin, CommandDef, EnumDef, EventDef, MemberDef, ObjectDef, SchemaBuilder,
    TypeDef, TypeRef,
};
pub use index::{
    AlternateType, Command, EnumType, Event, IntKind, Member, ObjectType, Schema, SchemaError, Type, TypeKind,
};
pub use model::{JsonType, MetaType, SchemaInfo};
pub use render::{RenderOptions, render_type};
pub use validate::{ArgumentError, ArgumentErrorKind};
