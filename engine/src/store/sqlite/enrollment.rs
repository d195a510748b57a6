//! Enrollment tokens on SQLite.

use drover_protocol::credentials::EnrollmentTokenView;

use super::SqliteStore;
use crate::error::StoreError;
use crate::store::enrollment::{json_list, name_taken};
use crate::store::rows::EnrollmentRow;
use crate::store::sql::enrollment as sql;
use crate::store::{EnrollmentStore, NewEnrollment, Result};

impl EnrollmentStore for SqliteStore {
    async fn create_enrollment_token(
        &self,
        new: &NewEnrollment<'_>,
        now_us: i64,
    ) -> Result<EnrollmentTokenView> {
        sqlx::query_as::<_, EnrollmentRow>(sql::CREATE)
            .bind(new.name)
            .bind(new.token_hash)
            .bind(new.prefix)
            .bind(json_list(new.task_types)?)
            .bind(json_list(new.labels)?)
            .bind(new.created_by)
            .bind(now_us)
            .bind(new.expires_at_us)
            .fetch_one(self.writer())
            .await
            .map_err(|e| name_taken(e, new.name))?
            .try_into()
    }

    async fn ensure_enrollment_token(&self, new: &NewEnrollment<'_>, now_us: i64) -> Result<()> {
        // A token with this hash (or name) exists already: leave it as it is.
        match self.create_enrollment_token(new, now_us).await {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn adopt_unenrolled_agents(&self, token_hash: &str) -> Result<u64> {
        Ok(sqlx::query(sql::ADOPT_UNENROLLED)
            .bind(token_hash)
            .execute(self.writer())
            .await?
            .rows_affected())
    }

    async fn usable_enrollment_token(
        &self,
        token_hash: &str,
        now_us: i64,
    ) -> Result<Option<EnrollmentTokenView>> {
        sqlx::query_as::<_, EnrollmentRow>(sql::USABLE)
            .bind(token_hash)
            .bind(now_us)
            .fetch_optional(self.reader())
            .await?
            .map(EnrollmentTokenView::try_from)
            .transpose()
    }

    async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenView>> {
        sqlx::query_as::<_, EnrollmentRow>(sql::LIST)
            .fetch_all(self.reader())
            .await?
            .into_iter()
            .map(EnrollmentTokenView::try_from)
            .collect()
    }

    async fn revoke_enrollment_token(&self, id: i64, now_us: i64) -> Result<Vec<i64>> {
        let found: Option<i64> = sqlx::query_scalar(sql::REVOKE)
            .bind(id)
            .bind(now_us)
            .fetch_optional(self.writer())
            .await?;
        if found.is_none() {
            return Err(StoreError::NotFound);
        }
        Ok(sqlx::query_scalar(sql::AGENTS_OF)
            .bind(id)
            .fetch_all(self.writer())
            .await?)
    }
}
