//! Users, API tokens and dashboard sessions on SQLite.

use drover_protocol::api::{Role, UserView};

use super::SqliteStore;
use crate::error::StoreError;
use crate::store::rows::{ApiTokenRow, TokenUserRow, UserRecordRow, UserRow};
use crate::store::sql::users as sql;
use crate::store::users::unique_violation;
use crate::store::{
    ApiToken, NewToken, Result, TokenUser, UserChange, UserRecord, UserStore, UserSummary,
};

impl UserStore for SqliteStore {
    async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
        now_us: i64,
    ) -> Result<UserView> {
        sqlx::query_as::<_, UserRow>(sql::CREATE)
            .bind(name)
            .bind(role.as_str())
            .bind(password_hash)
            .bind(now_us)
            .fetch_one(self.writer())
            .await
            .map_err(|e| unique_violation(e, name))?
            .try_into()
    }

    async fn add_api_token(&self, token: NewToken<'_>) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(sql::ADD_API_TOKEN)
            .bind(token.token_hash)
            .bind(token.user_id)
            .bind(token.name)
            .bind(token.prefix)
            .bind(token.now_us)
            .bind(token.expires_at_us)
            .fetch_optional(self.writer())
            .await?)
    }

    async fn start_session(
        &self,
        user_id: i64,
        token_hash: &str,
        expires_at_us: i64,
        now_us: i64,
    ) -> Result<()> {
        sqlx::query(sql::START_SESSION)
            .bind(token_hash)
            .bind(user_id)
            .bind(now_us)
            .bind(expires_at_us)
            .execute(self.writer())
            .await?;
        // Expired sessions are of no use to anyone: drop them while here.
        sqlx::query(sql::DROP_EXPIRED_SESSIONS)
            .bind(now_us)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn end_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query(sql::END_SESSION)
            .bind(token_hash)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn revoke_api_token(&self, id: i64, now_us: i64) -> Result<bool> {
        let done = sqlx::query(sql::REVOKE_API_TOKEN)
            .bind(id)
            .bind(now_us)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn api_token(&self, id: i64) -> Result<Option<ApiToken>> {
        let row = sqlx::query_as::<_, ApiTokenRow>(sql::API_TOKEN)
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(ApiToken::from))
    }

    async fn list_api_tokens(&self, user_id: Option<i64>) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query_as::<_, ApiTokenRow>(sql::LIST_API_TOKENS)
            .bind(user_id)
            .fetch_all(self.reader())
            .await?;
        Ok(rows.into_iter().map(ApiToken::from).collect())
    }

    async fn token_revoked(&self, token_hash: &str) -> Result<bool> {
        let revoked_at: Option<Option<i64>> = sqlx::query_scalar(sql::TOKEN_REVOKED_AT)
            .bind(token_hash)
            .fetch_optional(self.reader())
            .await?;
        Ok(revoked_at.flatten().is_some())
    }

    async fn user_by_token(&self, token_hash: &str, now_us: i64) -> Result<Option<TokenUser>> {
        sqlx::query_as::<_, TokenUserRow>(sql::USER_BY_TOKEN)
            .bind(token_hash)
            .bind(now_us)
            .fetch_optional(self.reader())
            .await?
            .map(TokenUser::try_from)
            .transpose()
    }

    async fn touch_token(&self, token_id: i64, now_us: i64) -> Result<()> {
        sqlx::query(sql::TOUCH_TOKEN)
            .bind(token_id)
            .bind(now_us)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        sqlx::query_as::<_, UserRecordRow>(sql::USER_BY_NAME)
            .bind(name)
            .fetch_optional(self.reader())
            .await?
            .map(UserRecord::try_from)
            .transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>> {
        sqlx::query_as::<_, UserRecordRow>(sql::LIST)
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(UserSummary::try_from)
            .collect()
    }

    async fn change_user(&self, user_id: i64, change: UserChange, now_us: i64) -> Result<()> {
        // SQLite has one writer: the transaction alone keeps the last admin.
        let mut tx = self.writer().begin().await?;
        let (role, disabled_at): (String, Option<i64>) = sqlx::query_as(sql::ROLE_AND_DISABLED)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let enabled_admin = role == Role::Admin.as_str() && disabled_at.is_none();
        if enabled_admin && !change.keeps_admin() {
            let others: i64 = sqlx::query_scalar(sql::OTHER_ENABLED_ADMINS)
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            if others == 0 {
                return Err(StoreError::Conflict(
                    "this is the last enabled admin; make another admin first".into(),
                ));
            }
        }
        match change {
            UserChange::Role(r) => {
                sqlx::query(sql::SET_ROLE)
                    .bind(user_id)
                    .bind(r.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            UserChange::Disabled(true) => {
                sqlx::query(sql::DISABLE)
                    .bind(user_id)
                    .bind(now_us)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql::END_SESSIONS_OF)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            UserChange::Disabled(false) => {
                sqlx::query(sql::ENABLE)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        let done = sqlx::query(sql::SET_PASSWORD)
            .bind(user_id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(sql::END_SESSIONS_OF)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
