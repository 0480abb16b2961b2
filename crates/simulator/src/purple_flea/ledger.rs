//! Purple Flea's money and state: the wallet balance, bets, escrows and transfers, and the
//! one critical section that executes a checked command and stores its response.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::audit::Audit;
use crate::fault::draw;
use crate::idempotency::{Fingerprint, IdempotencyCache, StoredResponse};
use crate::money::format_amount_minor;
use crate::time::now_rfc3339;

use super::CURRENCY;

/// Dice rolls are uniform in `0..DICE_FACES`.
const DICE_FACES: u64 = 100;
/// The house keeps 1%: a win pays `amount * DICE_PAYOUT_PERCENT / chance_percent`.
const DICE_PAYOUT_PERCENT: i64 = 99;
/// A rule index no fault rule can have, so dice rolls are independent of fault draws.
const DICE_DRAW_STREAM: u64 = u64::MAX;

/// Everything the server knows, behind one mutex: balance, records, idempotency cache, audit.
/// Critical sections are map operations and one small JSON serialisation; no await inside.
#[derive(Default)]
pub(super) struct Ledger {
    pub(super) balance_minor: i64,
    pub(super) cache: IdempotencyCache,
    pub(super) audit: Audit,
    pub(super) bets_by_key: HashMap<String, Bytes>,
    pub(super) escrows_by_id: HashMap<String, Escrow>,
    pub(super) escrow_id_by_key: HashMap<String, String>,
    pub(super) transfers_by_key: HashMap<String, Bytes>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EscrowState {
    Created,
    Funded,
    Released,
    Refunded,
}

impl EscrowState {
    fn as_str(self) -> &'static str {
        match self {
            EscrowState::Created => "created",
            EscrowState::Funded => "funded",
            EscrowState::Released => "released",
            EscrowState::Refunded => "refunded",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EscrowMove {
    Fund,
    Release,
    Refund,
}

impl EscrowMove {
    fn target(self, from: EscrowState) -> Option<EscrowState> {
        match (self, from) {
            (EscrowMove::Fund, EscrowState::Created) => Some(EscrowState::Funded),
            (EscrowMove::Release, EscrowState::Funded) => Some(EscrowState::Released),
            (EscrowMove::Refund, EscrowState::Funded | EscrowState::Created) => {
                Some(EscrowState::Refunded)
            }
            _ => None,
        }
    }

    pub(super) fn verb(self) -> &'static str {
        match self {
            EscrowMove::Fund => "fund",
            EscrowMove::Release => "release",
            EscrowMove::Refund => "refund",
        }
    }

    fn route(self) -> &'static str {
        match self {
            EscrowMove::Fund => "POST /escrow/{id}/fund",
            EscrowMove::Release => "POST /escrow/{id}/release",
            EscrowMove::Refund => "POST /escrow/{id}/refund",
        }
    }
}

pub(super) struct Escrow {
    id: String,
    create_key: String,
    state: EscrowState,
    buyer: String,
    seller: String,
    amount_minor: i64,
    created_at: String,
}

impl Escrow {
    pub(super) fn body(&self) -> Value {
        json!({
            "id": self.id,
            "idempotency_key": self.create_key,
            "state": self.state.as_str(),
            "buyer": self.buyer,
            "seller": self.seller,
            "amount": format_amount_minor(self.amount_minor),
            "created_at": self.created_at,
        })
    }
}

/// A checked mutation, ready to execute.
pub(super) enum Command {
    Bet {
        amount_minor: i64,
        target: i64,
        over: bool,
    },
    CreateEscrow {
        buyer: String,
        seller: String,
        amount_minor: i64,
    },
    MoveEscrow {
        id: String,
        step: EscrowMove,
    },
    Transfer {
        to: String,
        amount_minor: i64,
    },
}

impl Command {
    fn route(&self) -> &'static str {
        match self {
            Command::Bet { .. } => "POST /casino/bet",
            Command::CreateEscrow { .. } => "POST /escrow/create",
            Command::MoveEscrow { step, .. } => step.route(),
            Command::Transfer { .. } => "POST /wallet/transfer",
        }
    }
}

/// What one execution produced.
struct Execution {
    status: StatusCode,
    body: Value,
    /// True when state changed (a side effect the audit counts).
    side_effect: bool,
}

impl Execution {
    /// A change that happened: the audit counts it.
    fn done(status: StatusCode, body: Value) -> Execution {
        Execution {
            status,
            body,
            side_effect: true,
        }
    }
}

fn refused(status: StatusCode, code: &str, message: String) -> Execution {
    Execution {
        status,
        body: json!({ "error": code, "message": message }),
        side_effect: false,
    }
}

fn insufficient_funds(balance_minor: i64, amount_minor: i64) -> Execution {
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_funds",
        format!(
            "the balance {} is below the amount {}",
            format_amount_minor(balance_minor),
            format_amount_minor(amount_minor)
        ),
    )
}

impl Ledger {
    /// Executes `command` and stores its response under `key`, all in the caller's one
    /// critical section: a replay can never see a half-done execution.
    pub(super) fn commit(
        &mut self,
        seed: u64,
        key: &str,
        request_fingerprint: Fingerprint,
        command: &Command,
    ) -> StoredResponse {
        let execution = self.execute(seed, key, command);
        let stored = StoredResponse {
            status: execution.status,
            body: Bytes::from(execution.body.to_string()),
        };
        if execution.side_effect {
            self.audit.record(key, command.route());
            // Look-ups by key share the stored bytes with the idempotency cache.
            match command {
                Command::Bet { .. } => {
                    self.bets_by_key.insert(key.to_owned(), stored.body.clone());
                }
                Command::Transfer { .. } => {
                    self.transfers_by_key
                        .insert(key.to_owned(), stored.body.clone());
                }
                Command::CreateEscrow { .. } | Command::MoveEscrow { .. } => {}
            }
        }
        self.cache.finish(key, request_fingerprint, stored.clone());
        stored
    }

    fn execute(&mut self, seed: u64, key: &str, command: &Command) -> Execution {
        match command {
            Command::Bet {
                amount_minor,
                target,
                over,
            } => self.place_bet(seed, key, *amount_minor, *target, *over),
            Command::CreateEscrow {
                buyer,
                seller,
                amount_minor,
            } => self.create_escrow(key, buyer, seller, *amount_minor),
            Command::MoveEscrow { id, step } => self.move_escrow(key, id, *step),
            Command::Transfer { to, amount_minor } => self.transfer(key, to, *amount_minor),
        }
    }

    fn place_bet(
        &mut self,
        seed: u64,
        key: &str,
        amount_minor: i64,
        target: i64,
        over: bool,
    ) -> Execution {
        if self.balance_minor < amount_minor {
            return insufficient_funds(self.balance_minor, amount_minor);
        }
        // The roll is a function of the seed and the key: reruns of a scenario roll the same dice.
        let roll = (draw(seed, DICE_DRAW_STREAM, "dice", key, 0) % DICE_FACES) as i64;
        let (won, chance_percent) = if over {
            (roll >= target, 100 - target)
        } else {
            (roll < target, target)
        };
        // amount <= AMOUNT_MINOR_MAX (1e14) times 99 stays far below i64::MAX.
        let payout_minor = if won {
            amount_minor * DICE_PAYOUT_PERCENT / chance_percent
        } else {
            0
        };
        // Saturating: a long lucky streak must not wrap the balance around.
        self.balance_minor = (self.balance_minor - amount_minor).saturating_add(payout_minor);
        let body = json!({
            "id": format!("bet_{}", uuid::Uuid::new_v4()),
            "idempotency_key": key,
            "status": "complete",
            "game": "dice",
            "amount": format_amount_minor(amount_minor),
            "target": target,
            "prediction": if over { "over" } else { "under" },
            "roll": roll,
            "outcome": if won { "win" } else { "loss" },
            "payout": format_amount_minor(payout_minor),
            "created_at": now_rfc3339(),
        });
        Execution::done(StatusCode::CREATED, body)
    }

    fn create_escrow(
        &mut self,
        key: &str,
        buyer: &str,
        seller: &str,
        amount_minor: i64,
    ) -> Execution {
        let escrow = Escrow {
            id: format!("esc_{}", uuid::Uuid::new_v4()),
            create_key: key.to_owned(),
            state: EscrowState::Created,
            buyer: buyer.to_owned(),
            seller: seller.to_owned(),
            amount_minor,
            created_at: now_rfc3339(),
        };
        let body = escrow.body();
        self.escrow_id_by_key
            .insert(key.to_owned(), escrow.id.clone());
        self.escrows_by_id.insert(escrow.id.clone(), escrow);
        Execution::done(StatusCode::CREATED, body)
    }

    fn move_escrow(&mut self, key: &str, id: &str, step: EscrowMove) -> Execution {
        let balance_minor = self.balance_minor;
        let Some(escrow) = self.escrows_by_id.get_mut(id) else {
            return refused(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no escrow {id}"),
            );
        };
        let Some(target) = step.target(escrow.state) else {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state_transition",
                format!(
                    "cannot {} an escrow in state {}",
                    step.verb(),
                    escrow.state.as_str()
                ),
            );
        };
        if step == EscrowMove::Fund {
            if balance_minor < escrow.amount_minor {
                return insufficient_funds(balance_minor, escrow.amount_minor);
            }
            self.balance_minor -= escrow.amount_minor;
        }
        escrow.state = target;
        let body = escrow.body();
        self.escrow_id_by_key.insert(key.to_owned(), id.to_owned());
        Execution::done(StatusCode::OK, body)
    }

    fn transfer(&mut self, key: &str, to: &str, amount_minor: i64) -> Execution {
        if self.balance_minor < amount_minor {
            return insufficient_funds(self.balance_minor, amount_minor);
        }
        self.balance_minor -= amount_minor;
        let body = json!({
            "id": format!("tx_{}", uuid::Uuid::new_v4()),
            "idempotency_key": key,
            "status": "complete",
            "to": to,
            "amount": format_amount_minor(amount_minor),
            "currency": CURRENCY,
            "created_at": now_rfc3339(),
        });
        Execution::done(StatusCode::CREATED, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escrow_moves_follow_the_state_machine() {
        use EscrowMove::{Fund, Refund, Release};
        use EscrowState::{Created, Funded, Refunded, Released};
        let cases = [
            (Fund, Created, Some(Funded)),
            (Fund, Funded, None),
            (Fund, Released, None),
            (Fund, Refunded, None),
            (Release, Created, None),
            (Release, Funded, Some(Released)),
            (Release, Released, None),
            (Release, Refunded, None),
            (Refund, Created, Some(Refunded)),
            (Refund, Funded, Some(Refunded)),
            (Refund, Released, None),
            (Refund, Refunded, None),
        ];
        for (step, from, expected) in cases {
            assert_eq!(step.target(from), expected, "{step:?} from {from:?}");
        }
    }

    #[test]
    fn dice_pays_the_documented_odds() {
        let mut ledger = Ledger {
            balance_minor: 1_000_000,
            ..Ledger::default()
        };
        let mut wins = 0;
        for index in 0..1000 {
            let execution = ledger.place_bet(5, &format!("k{index}"), 1000, 50, true);
            assert_eq!(execution.status, StatusCode::CREATED);
            let payout = execution.body["payout"]
                .as_str()
                .expect("payout")
                .to_owned();
            if execution.body["outcome"] == "win" {
                wins += 1;
                assert_eq!(payout, "19.80");
                assert!(execution.body["roll"].as_i64().expect("roll") >= 50);
            } else {
                assert_eq!(payout, "0.00");
            }
        }
        assert!((400..=600).contains(&wins), "{wins} wins of 1000 at 50%");
    }
}
