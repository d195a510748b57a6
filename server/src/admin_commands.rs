//! `drover-server user …`: administration from the command line, working on
//! the database directly (for the first admin, or when locked out).

use drover_engine::store::{UserChange, UserStore};
use drover_engine::time::now_us;
use drover_engine::Store;

use crate::config::UserCommand;

pub async fn run(store: &Store, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            password,
        } => {
            let created = crate::accounts::create(store, &name, role, password.as_deref()).await?;
            println!(
                "created {} ({})",
                created.user.name,
                created.user.role.as_str()
            );
            println!("API token (shown once): {}", created.token);
        }
        UserCommand::List => {
            for u in store.list_users().await? {
                let state = if u.disabled { "\tdisabled" } else { "" };
                println!("{}\t{}{state}", u.user.name, u.user.role.as_str());
            }
        }
        UserCommand::Role { name, role } => {
            let user = crate::accounts::change(store, &name, UserChange::Role(role)).await?;
            println!("{} is now {}", user.name, user.role.as_str());
        }
        UserCommand::Disable { name } => {
            crate::accounts::change(store, &name, UserChange::Disabled(true)).await?;
            println!("{name} disabled: sessions and tokens are refused");
        }
        UserCommand::Enable { name } => {
            crate::accounts::change(store, &name, UserChange::Disabled(false)).await?;
            println!("{name} enabled");
        }
        UserCommand::Password { name, password } => {
            let user = crate::accounts::find(store, &name).await?;
            crate::accounts::set_password(store, user.id, &password).await?;
            println!("password of {name} changed; their sessions ended");
        }
        UserCommand::Tokens { name } => {
            let user = match name {
                Some(n) => Some(crate::accounts::find(store, &n).await?.id),
                None => None,
            };
            let now = now_us();
            println!("ID\tUSER\tNAME\tPREFIX\tSTATE");
            for t in store.list_api_tokens(user).await? {
                let state = if t.revoked_at_us.is_some() {
                    "revoked"
                } else if t.expires_at_us.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "live"
                };
                println!(
                    "{}\t{}\t{}\t{}…\t{state}",
                    t.id, t.user_name, t.name, t.prefix
                );
            }
        }
        UserCommand::AddToken {
            name,
            label,
            expires_in,
        } => {
            let user = crate::accounts::find(store, &name).await?;
            let (token, id) =
                crate::accounts::issue_token(store, user.id, &label, expires_in.into()).await?;
            println!("token {id} for {name} (shown once): {token}");
        }
        UserCommand::RevokeToken { id } => {
            if store.revoke_api_token(id, now_us()).await? {
                println!("token {id} revoked");
            } else {
                anyhow::bail!("no live API token {id}");
            }
        }
    }
    Ok(())
}
