//! `drover-server user …`: administration from the command line.

use drover_engine::store::UserStore;
use drover_engine::time::now_us;
use drover_engine::Store;

use crate::auth::{hash_token, new_token};
use crate::config::{Command, UserCommand};

pub async fn run(store: &Store, command: Command) -> anyhow::Result<()> {
    match command {
        Command::User(UserCommand::Add {
            name,
            role,
            password,
        }) => {
            let created = crate::users::create(store, &name, role, password.as_deref()).await?;
            println!(
                "created {} ({})",
                created.user.name,
                created.user.role.as_str()
            );
            println!("API token (shown once): {}", created.token);
        }
        Command::User(UserCommand::List) => {
            for u in store.list_users().await? {
                println!("{}\t{}", u.name, u.role.as_str());
            }
        }
    }
    Ok(())
}

/// Issues a new API token for a user.
pub async fn issue_token(
    store: &Store,
    user_id: i64,
    label: &str,
) -> Result<String, drover_engine::StoreError> {
    let token = new_token();
    store
        .add_api_token(user_id, &hash_token(&token), label, now_us())
        .await?;
    Ok(token)
}
