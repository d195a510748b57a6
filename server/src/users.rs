//! Creating users, shared by the CLI and `POST /api/v1/users`.

use drover_engine::domain::check_name;
use drover_engine::store::UserStore;
use drover_engine::time::now_us;
use drover_engine::{FieldError, Store};
use drover_protocol::api::{Role, UserWithToken};

use crate::error::ApiError;
use crate::passwords::{hash_password, MIN_PASSWORD_LEN};

/// Validates and creates a user, and issues their first API token.
pub async fn create(
    store: &Store,
    name: &str,
    role: Role,
    password: Option<&str>,
) -> Result<UserWithToken, ApiError> {
    check_name("name", name)?;
    let hash = match password {
        Some(p) if p.chars().count() < MIN_PASSWORD_LEN => {
            return Err(FieldError::new(
                "password",
                format!("must be at least {MIN_PASSWORD_LEN} characters"),
            )
            .into())
        }
        Some(p) => Some(hash_password(p).map_err(|e| FieldError::new("password", e))?),
        None => None,
    };
    let user = store
        .create_user(name, role, hash.as_deref(), now_us())
        .await?;
    let token = crate::cli::issue_token(store, user.id, "first token").await?;
    Ok(UserWithToken { user, token })
}
