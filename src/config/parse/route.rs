//! The `[[route]]` section, the rule across routes, and the implied
//! default route.

use super::eni::Enis;
use super::{Checker, default_prefix};
use crate::config::model::{Balance, Eni, EniId, Route};
use crate::config::raw::{OneOrMany, RawRoute};
use toml::Spanned;

impl Checker<'_> {
    /// The `[[route]]` entries that are valid, in file order.
    pub(super) fn routes(&mut self, raw: &[Spanned<RawRoute>], enis: &Enis) -> Vec<Route> {
        raw.iter().filter_map(|r| self.route(r, enis)).collect()
    }

    /// One `[[route]]`: `dst` and `from` are CIDR prefixes, `via` names
    /// existing ENIs, each once, with one valid weight each (the seed's
    /// FAQ: routes through several ENIs balance load).
    fn route(&mut self, raw_route: &Spanned<RawRoute>, enis: &Enis) -> Option<Route> {
        let line = self.lines.of(raw_route);
        let r = raw_route.get_ref();
        let entry = format!("[[route]] {}", r.dst.get_ref());
        let dst = self.cidr(&r.dst, &entry, "dst");
        let from = match &r.from {
            Some(s) => self.cidr(s, &entry, "from").map(Some),
            None => Some(None),
        };
        let names = r.via.get_ref().names();
        let via = self.via(&r.via, &names, &entry, enis);
        let weights = self.weights(r.weights.as_ref(), names.len(), &entry);
        if let (Some(dst), Some(from)) = (dst, from)
            && via.len() == names.len()
            && weights.len() == via.len()
        {
            Some(Route {
                dst,
                from,
                via,
                weights,
                balance: r.balance,
                metric: r.metric,
                implied: false,
                line,
            })
        } else {
            None
        }
    }

    /// The ENIs a route's `via` names; errors on the line of `via`.
    fn via(
        &mut self,
        via: &Spanned<OneOrMany>,
        names: &[String],
        entry: &str,
        enis: &Enis,
    ) -> Vec<EniId> {
        let via_line = self.lines.of(via);
        if names.is_empty() {
            self.err(via_line, entry, "via names no ENI");
        }
        let mut ids = Vec::new();
        for n in names {
            match enis.by_name.get(n) {
                Some(&id) if ids.contains(&id) => self.err(
                    via_line,
                    entry,
                    format!("ENI {n:?} appears twice in via; use weights instead"),
                ),
                Some(&id) if !enis.list[usize::from(id.0)].attached => self.err(
                    via_line,
                    entry,
                    format!("via names {n:?}, which is detached from the instance (attached = false): the OS has no route through it"),
                ),
                Some(&id) => ids.push(id),
                None => self.err(
                    via_line,
                    entry,
                    format!("via names {n:?}, which is not an ENI"),
                ),
            }
        }
        ids
    }

    /// A route's `weights`: all 1 if absent, else one per name in `via`,
    /// each 1 to 65535 (a bad one is reported and read as 1).
    fn weights(&mut self, raw: Option<&Spanned<Vec<i64>>>, n: usize, entry: &str) -> Vec<u32> {
        let Some(w) = raw else {
            return vec![1; n];
        };
        let wl = self.lines.of(w);
        if w.get_ref().len() != n {
            self.err(
                wl,
                entry,
                format!(
                    "weights has {} entries but via has {}",
                    w.get_ref().len(),
                    n
                ),
            );
        }
        w.get_ref()
            .iter()
            .map(|&x| {
                if x <= 0 || x > i64::from(u16::MAX) {
                    self.err(
                        wl,
                        entry,
                        format!("weight {x} must be a positive integer up to 65535"),
                    );
                    1
                } else {
                    x as u32
                }
            })
            .collect()
    }

    /// Across routes: no two with the same `dst`, `from` and `metric`,
    /// which the lookup could not tell apart. The error is on the later.
    pub(super) fn distinct_routes(&mut self, routes: &[Route]) {
        for (i, a) in routes.iter().enumerate() {
            if let Some(b) = routes[..i]
                .iter()
                .find(|b| b.dst == a.dst && b.from == a.from && b.metric == a.metric)
            {
                self.err(a.line, format!("[[route]] {}", a.dst), format!(
                    "same dst, from and metric as the route on line {}: give one a different metric", b.line));
            }
        }
    }
}

/// The seed's FAQ: by default packets leave from the primary ENI. Unless
/// the file routes 0.0.0.0/0 itself (any route for it, with or without
/// `from`), a default route via the primary ENI is added, marked implied.
pub(super) fn add_implied_default(routes: &mut Vec<Route>, enis: &[Eni]) {
    let routes_default = routes.iter().any(|r| r.dst.prefix() == 0);
    if !routes_default && let Some(p) = enis.iter().position(|e| e.primary) {
        routes.push(Route {
            dst: default_prefix(),
            from: None,
            via: vec![EniId(p as u16)],
            weights: vec![1],
            balance: Balance::Hash,
            metric: 0,
            implied: true,
            line: 0,
        });
    }
}
