//! What a principal may see: **the one place scope is decided** (docs/access.md, "Scope").
//!
//! A department sees the sites whose region code lies within its own (by prefix: province
//! `610000` covers `61xxxx`, city `610100` covers `6101xx`) and whose industry it supervises;
//! an integrator sees the sites it manages. Everything else (findings, cameras, devices,
//! readings, evidence, later records) belongs to a site, so a scope is a set of sites. It is
//! applied two ways that must agree, both produced here: [`Scope::sql`], a condition on a
//! `site_id` column inside every store query, and [`Scope::admits`] for what the hub holds in
//! memory (the registry's devices, the camera manager's cameras). A property test checks both
//! against a reference implementation.

use std::collections::BTreeSet;

use common::Industry;

use crate::store::Bind;

/// The site facts scope looks at.
#[derive(Debug, Clone, Copy)]
pub struct SiteFacts<'a> {
    pub region: &'a str,
    pub industry: Industry,
    pub integrator: Option<&'a str>,
}

impl<'a> SiteFacts<'a> {
    pub fn of(s: &'a config::Site) -> Self {
        Self { region: &s.region, industry: s.industry, integrator: s.integrator.as_deref() }
    }
}

/// A department's share of the sites: region prefix and industries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartmentScope {
    /// The department's region code with its trailing `00` pairs removed (`610000` → `61`).
    pub prefix: String,
    pub industries: BTreeSet<Industry>,
}

/// What a principal may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every site (admins).
    All,
    /// The sites of a department's region and industries and/or those an integrator manages
    /// (a principal with both kinds of role sees both); neither: nothing.
    Limited { department: Option<DepartmentScope>, integrator: Option<String> },
}

/// The prefix a region code covers: the province (`61`), the city (`6101`) or the county
/// (`610102`) level, by its trailing `00` pairs.
pub fn region_prefix(code: &str) -> &str {
    let mut p = code;
    for _ in 0..2 {
        match p.strip_suffix("00") {
            Some(rest) if rest.len() >= 2 => p = rest,
            _ => break,
        }
    }
    p
}

impl Scope {
    /// Nothing at all (a principal without a department or sites).
    pub fn nothing() -> Self {
        Scope::Limited { department: None, integrator: None }
    }

    pub fn department(region: &str, industries: impl IntoIterator<Item = Industry>) -> Self {
        Scope::Limited {
            department: Some(DepartmentScope {
                prefix: region_prefix(region).to_owned(),
                industries: industries.into_iter().collect(),
            }),
            integrator: None,
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Scope::All)
    }

    /// Whether a site with these facts is within the scope.
    pub fn admits(&self, site: SiteFacts<'_>) -> bool {
        match self {
            Scope::All => true,
            Scope::Limited { department, integrator } => {
                department.as_ref().is_some_and(|d| {
                    site.region.starts_with(&d.prefix) && d.industries.contains(&site.industry)
                }) || integrator.as_deref().is_some_and(|i| site.integrator == Some(i))
            }
        }
    }

    /// A condition on `column` (a site id) admitting exactly the sites [`Scope::admits`]
    /// admits, for a `WHERE … AND {condition}`; its parameters are appended to `binds`, the
    /// query's parameters so far, and numbered after them (`$N`, both backends).
    pub fn sql(&self, column: &str, binds: &mut Vec<Bind>) -> String {
        let Scope::Limited { department, integrator } = self else { return "1 = 1".into() };
        let mut any = Vec::new();
        if let Some(d) = department
            && !d.industries.is_empty()
        {
            // The prefix is digits only (a validated region code): no LIKE metacharacters.
            binds.push(Bind::Text(format!("{}%", d.prefix)));
            let industries: Vec<String> =
                d.industries.iter().map(|i| format!("'{}'", i.as_str())).collect();
            any.push(format!(
                "(region LIKE ${} AND industry IN ({}))",
                binds.len(),
                industries.join(",")
            ));
        }
        if let Some(i) = integrator {
            binds.push(Bind::Text(i.clone()));
            any.push(format!("integrator = ${}", binds.len()));
        }
        if any.is_empty() {
            return "1 = 0".into();
        }
        format!("{column} IN (SELECT id FROM sites WHERE {})", any.join(" OR "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_follow_the_administrative_levels() {
        assert_eq!(region_prefix("610000"), "61");
        assert_eq!(region_prefix("610100"), "6101");
        assert_eq!(region_prefix("610102"), "610102");
        assert_eq!(region_prefix("110000"), "11");
        // A code that is all zeros after the province keeps two digits.
        assert_eq!(region_prefix("000000"), "00");
    }

    #[test]
    fn province_sees_its_cities_city_sees_only_its_own() {
        let site = |region| SiteFacts { region, industry: Industry::Food, integrator: None };
        let province = Scope::department("610000", [Industry::Food]);
        let xian = Scope::department("610100", [Industry::Food]);
        assert!(province.admits(site("610102")) && province.admits(site("610202")));
        assert!(xian.admits(site("610102")) && !xian.admits(site("610202")));
        assert!(!province.admits(site("620100")));
        let transport =
            SiteFacts { region: "610102", industry: Industry::Transport, integrator: None };
        assert!(!xian.admits(transport));
        assert!(!Scope::nothing().admits(site("610102")));
        assert!(Scope::All.admits(site("610102")));
    }

    /// The reference: a region code lies within a department's when they agree on every
    /// digit of the department's code up to its last non-zero two-digit level.
    fn reference(dept: Option<(&str, &[Industry])>, integ: Option<&str>, s: SiteFacts) -> bool {
        let by_dept = dept.is_some_and(|(code, inds)| {
            let levels = [&code[0..2], &code[2..4], &code[4..6]];
            let site_levels = [&s.region[0..2], &s.region[2..4], &s.region[4..6]];
            // The department's level: the last of its pairs that is not "00" (the province
            // pair always counts).
            let depth = (1..3).rev().find(|&k| levels[k] != "00").map_or(1, |k| k + 1);
            (0..depth).all(|k| levels[k] == site_levels[k]) && inds.contains(&s.industry)
        });
        by_dept || integ.is_some_and(|i| s.integrator == Some(i))
    }

    fn code() -> impl Strategy<Value = String> {
        // Few distinct digits, so that prefixes collide often.
        (0u8..3, 0u8..3, 0u8..3).prop_map(|(a, b, c)| {
            let pair = |x: u8| match x {
                0 => "00",
                1 => "01",
                _ => "61",
            };
            format!("{}{}{}", if a == 0 { "61" } else { pair(a) }, pair(b), pair(c))
        })
    }

    fn industry() -> impl Strategy<Value = Industry> {
        prop_oneof![Just(Industry::Food), Just(Industry::Transport)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn admits_agrees_with_the_reference(
            dept in proptest::option::of((code(), proptest::collection::btree_set(industry(), 0..3))),
            integ in proptest::option::of(prop_oneof![Just("ia"), Just("ib")]),
            region in code(),
            ind in industry(),
            site_integ in proptest::option::of(prop_oneof![Just("ia"), Just("ib")]),
        ) {
            let scope = Scope::Limited {
                department: dept.as_ref().map(|(c, i)| DepartmentScope {
                    prefix: region_prefix(c).to_owned(),
                    industries: i.clone(),
                }),
                integrator: integ.map(str::to_owned),
            };
            let site = SiteFacts { region: &region, industry: ind, integrator: site_integ };
            let inds: Vec<Industry> = dept.as_ref().map(|(_, i)| i.iter().copied().collect()).unwrap_or_default();
            let want = reference(dept.as_ref().map(|(c, _)| (c.as_str(), inds.as_slice())), integ, site);
            prop_assert_eq!(scope.admits(site), want, "{:?} {:?}", scope, site);
        }
    }
}
