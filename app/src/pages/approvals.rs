//! The approvals inbox: what the signed-in user may decide, with the
//! rendered message and the run's inputs; and what was decided lately.

use drover_protocol::workflow::{ApprovalList, ApprovalView};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api;
use crate::components::{
    my_name, outcome_view, session, use_me, Badge, ConfirmButton, Empty, ErrorBox, Loading, Time,
};
use crate::live::{use_live, Topic};

#[component]
pub fn Approvals() -> impl IntoView {
    let live = use_live();
    let me = use_me();
    let inbox = Resource::new(
        move || live.watch(Topic::Approvals),
        |_| api::fetch("/approvals?status=pending"),
    );
    let decided = Resource::new(
        move || live.watch(Topic::Approvals),
        |_| api::fetch("/approvals?status=all&mine=false"),
    );
    // Open approvals the caller may not decide (someone else must, or they
    // started the run): shown with why, so the count on the overview is
    // never an empty inbox.
    let others = Resource::new(
        move || live.watch(Topic::Approvals),
        |_| api::fetch("/approvals?status=pending&mine=false"),
    );
    let act = Action::new(|(id, approve, comment): &(i64, bool, String)| {
        let (id, approve, comment) = (*id, *approve, comment.clone());
        async move {
            decide(id, approve, comment).await.map(|_| {
                if approve {
                    format!("Approval {id}: approved.")
                } else {
                    format!("Approval {id}: rejected.")
                }
            })
        }
    });
    Effect::new(move |_| {
        if act.value().get().is_some() {
            inbox.refetch();
            decided.refetch();
        }
    });
    let decide = Callback::new(move |(id, approve, comment): (i64, bool, String)| {
        act.dispatch((id, approve, comment));
    });
    // The approval whose rejection is being confirmed.
    let armed = RwSignal::new(None);
    view! {
        <Title text="Approvals"/>
        <h1 class="page-title">"Approvals"</h1>
        {move || outcome_view(act.value().get())}
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (inbox, me) = (api::parse::<ApprovalList>(inbox.await), session(me.await));
                let me = my_name(&me);
                match inbox {
                    Ok(l) if l.approvals.is_empty() => view! {
                        <Empty title="Nothing for you to decide">"Approvals you may decide appear here the moment a run asks for one."</Empty>
                    }.into_any(),
                    Ok(l) => view! {
                        <div class="cards" data-testid="inbox">
                            {l.approvals.into_iter().map(|a| view! { <ApprovalCard a mine=true me=me.clone() decide armed show_run=true/> }).collect_view()}
                        </div>
                    }.into_any(),
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                let (all, mine, me) = (
                    api::parse::<ApprovalList>(others.await),
                    api::parse::<ApprovalList>(inbox.await),
                    session(me.await),
                );
                let me = my_name(&me);
                let mine: Vec<i64> = mine.map(|l| l.approvals.iter().map(|a| a.id).collect()).unwrap_or_default();
                let waiting: Vec<ApprovalView> = match all {
                    Ok(l) => l.approvals.into_iter().filter(|a| !mine.contains(&a.id)).collect(),
                    Err(e) => return view! { <ErrorBox failure=e/> }.into_any(),
                };
                if waiting.is_empty() {
                    return ().into_any();
                }
                view! {
                    <h2>"Waiting for others"</h2>
                    <div class="cards" data-testid="others">
                        {waiting.into_iter().map(|a| view! { <ApprovalCard a mine=false me=me.clone() decide armed show_run=true/> }).collect_view()}
                    </div>
                }.into_any()
            })}
        </Transition>
        <h2>"Decided"</h2>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match api::parse::<ApprovalList>(decided.await) {
                    Ok(l) => {
                        let done: Vec<ApprovalView> = l.approvals.into_iter().filter(|a| a.status != "pending").take(50).collect();
                        if done.is_empty() {
                            return view! { <p class="muted">"None yet."</p> }.into_any();
                        }
                        view! {
                            <div class="table-wrap"><table class="data" data-testid="decided">
                                <thead><tr><th>"Run"</th><th>"Step"</th><th>"Decision"</th><th>"By"</th><th>"When"</th><th>"Comment"</th></tr></thead>
                                <tbody>
                                    {done.into_iter().map(|a| view! {
                                        <tr>
                                            <td><a href=format!("/runs/{}", a.run_id)>"#" {a.run_id}</a> " " {a.workflow.clone()}</td>
                                            <td>{a.step_id.clone()}</td>
                                            <td><Badge status=a.status.clone()/></td>
                                            <td>{closed_by(&a.status, a.decided_by.as_deref())}</td>
                                            <td class="muted">{a.decided_at_us.map(|t| view! { <Time t_us=t/> })}</td>
                                            <td>{a.comment.clone()}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table></div>
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorBox failure=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// Approves or rejects an approval; an empty comment is sent as none.
pub async fn decide(id: i64, approve: bool, comment: String) -> api::ApiResult<()> {
    let body = serde_json::json!({
        "decision": if approve { "approve" } else { "reject" },
        "comment": (!comment.trim().is_empty()).then_some(comment),
    });
    api::post::<serde_json::Value>(&format!("/approvals/{id}/decision"), &body)
        .await
        .map(|_| ())
}

/// One approval: decide it when `mine`, otherwise say why not or how it was decided.
#[component]
pub fn ApprovalCard(
    a: ApprovalView,
    mine: bool,
    me: String,
    decide: Callback<(i64, bool, String)>,
    /// The approval whose rejection is being confirmed (one per page).
    armed: RwSignal<Option<i64>>,
    show_run: bool,
) -> impl IntoView {
    // Read from the element when a button is pressed, so text typed before
    // the page hydrated is not lost.
    let comment: NodeRef<leptos::html::Textarea> = NodeRef::new();
    let text = move || comment.get().map(|el| el.value()).unwrap_or_default();
    let id = a.id;
    let pending = a.status == "pending";
    let who = {
        let mut who: Vec<String> = a
            .approvers
            .users
            .iter()
            .map(|u| format!("user {u}"))
            .collect();
        who.extend(a.approvers.roles.iter().map(|r| format!("role {r}")));
        who.join(", ")
    };
    let why_not = if a.requested_by == me {
        format!("You started this run, so someone else must approve it (separation of duties). Approvers: {who}.")
    } else {
        format!("Waiting for {who}.")
    };
    view! {
        <div class="approval card" data-testid=format!("approval-{}", a.step_id) data-status=a.status.clone()>
            <p>
                {show_run.then(|| view! { <a href=format!("/runs/{}", a.run_id)>"Run #" {a.run_id} " · " {a.workflow.clone()}</a> " · " })}
                <strong>{a.step_id.clone()}</strong> " " <Badge status=a.status.clone()/>
                <span class="muted">" requested by " {a.requested_by.clone()} ", " <Time t_us=a.created_at_us/></span>
            </p>
            <blockquote data-testid="approval-message">{a.message.clone()}</blockquote>
            {show_run.then(|| view! { <p class="muted">"Inputs: " <code class="inputs">{a.inputs.to_string()}</code></p> })}
            {a.expires_at_us.filter(|_| pending).map(|e| view! { <p class="muted">"Times out at " <Time t_us=e/></p> })}
            {if pending && mine {
                view! {
                    <div class="decide">
                        // A visible label: a placeholder is no name once text is typed.
                        <label class="comment-label" for=format!("comment-{id}")>"Comment (optional)"</label>
                        <textarea id=format!("comment-{id}") rows="2" data-testid="comment" node_ref=comment></textarea>
                        <button class="primary" data-testid="approve" on:click=move |_| decide.run((id, true, text()))>"Approve"</button>
                        // Rejecting ends the run: it asks first, like every action that cannot be undone.
                        <ConfirmButton armed id label="Reject" confirm_label="Confirm reject" testid="reject"
                            question="Reject? The run stops at this step."
                            on_confirm=Callback::new(move |_| decide.run((id, false, text())))/>
                    </div>
                }.into_any()
            } else if pending {
                view! { <p class="muted" data-testid="cannot-approve">{why_not}</p> }.into_any()
            } else {
                view! {
                    <p class="muted" data-testid="decided">{decided_how(&a.status, a.decided_by.as_deref())}
                        {a.decided_at_us.map(|t| view! { " at " <Time t_us=t/> })}
                        {a.comment.clone().map(|c| format!(": “{c}”"))}</p>
                }.into_any()
            }}
        </div>
    }
}

/// Who or what closed an approval: a person (or the schedule that
/// cancelled its run), its timeout, or the end of its run.
fn closed_by(status: &str, by: Option<&str>) -> String {
    match (status, by) {
        (_, Some(by)) => by.to_string(),
        ("cancelled", None) => "its run's end".into(),
        (_, None) => "its timeout".into(),
    }
}

fn decided_how(status: &str, by: Option<&str>) -> String {
    format!("{status} by {}", closed_by(status, by))
}
