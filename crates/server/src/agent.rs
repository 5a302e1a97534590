//! Agents: named sets of typed actions a node runs for callers.

use std::future::Future;
use std::pin::Pin;

use muster_protocol::ddl::Ddl;
use muster_protocol::{Request, StatusCode};
use serde_json::Value;

use crate::data::{DataError, Properties};
use crate::Node;

/// What an action returns: its output data, or a status and message.
pub type ActionResult = Result<Value, ActionError>;

/// A running action.
pub type ActionFuture = Pin<Box<dyn Future<Output = ActionResult> + Send>>;

/// An action that did not succeed, with MCollective's status code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    /// MCollective's status code for the reply.
    pub code: StatusCode,
    /// The reply's `statusmsg`.
    pub message: String,
    /// Outputs that still go back with the failure (MCollective replies
    /// carry data whatever their status).
    pub data: Value,
}

impl ActionError {
    /// A failure with `code` and `message` and no outputs.
    pub fn new(code: StatusCode, message: impl Into<String>) -> ActionError {
        ActionError {
            code,
            message: message.into(),
            data: Value::Object(serde_json::Map::new()),
        }
    }

    /// The same failure, with outputs.
    pub fn with_data(mut self, data: Value) -> ActionError {
        self.data = data;
        self
    }

    /// A required input was not given (status 3).
    pub fn missing(input: &str) -> ActionError {
        ActionError::new(
            StatusCode::MissingData,
            format!("missing required input {input:?}"),
        )
    }

    /// An input was given but is not acceptable (status 4).
    pub fn invalid(message: impl Into<String>) -> ActionError {
        ActionError::new(StatusCode::InvalidData, message)
    }

    /// The agent has no such action (status 2).
    pub fn unknown_action(agent: &str, action: &str) -> ActionError {
        ActionError::new(
            StatusCode::UnknownAction,
            format!("unknown action {action:?} for agent {agent:?}"),
        )
    }
}

/// Where an agent's code comes from: `rpcutil agent_inventory` reports
/// it, so an operator can see whether a node runs muster's own agent or
/// an external one that replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into muster.
    Builtin,
    /// An external agent (docs/external-agents.md).
    External {
        /// The program that runs its actions.
        executable: std::path::PathBuf,
        /// Its JSON DDL.
        ddl: std::path::PathBuf,
    },
}

/// A set of actions a node can run.
pub trait Agent: Send + Sync + 'static {
    /// What the agent's actions take and give. The node validates every
    /// request's inputs against it before calling [`Agent::call`], and
    /// answers `unknown action` for actions it does not list.
    fn ddl(&self) -> &Ddl;

    /// Runs one action. Quick actions answer from `node` directly; slow
    /// ones move what they need into the returned future.
    fn call(&self, node: &Node, action: &str, request: &Request) -> ActionFuture;

    /// The data plugin of the agent's name, for `-S` filters and action
    /// policies, as MCollective agents ship one (the puppet agent's
    /// `puppet()`); `None` when the agent has none. It runs off the async
    /// workers, and may read files.
    fn data(&self, _argument: &str) -> Option<Result<Properties, DataError>> {
        None
    }

    /// Where its code comes from; built in unless it says otherwise.
    fn origin(&self) -> Origin {
        Origin::Builtin
    }
}

/// An already-finished action.
pub fn ready(result: ActionResult) -> ActionFuture {
    Box::pin(std::future::ready(result))
}
