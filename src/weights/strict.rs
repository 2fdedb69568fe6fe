//! The strict check of a weights file against an architecture: every missing, unexpected and wrongly
//! shaped tensor, reported together in one message.

use std::collections::HashMap;

/// One tensor an architecture needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub name: String,
    pub shape: Vec<i64>,
    /// May be absent (the classifier head): then the whole group must be absent.
    pub optional: bool,
}

/// What is wrong with a file, by category.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Mismatch {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// (name, shape in the file, shape expected)
    pub wrong_shape: Vec<(String, Vec<i64>, Vec<i64>)>,
}

impl Mismatch {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }

    /// A multi-line report, at most `limit` names per category.
    pub fn describe(&self, limit: usize) -> String {
        let mut s = format!(
            "{} missing, {} unexpected, {} wrongly shaped tensor(s)",
            self.missing.len(),
            self.unexpected.len(),
            self.wrong_shape.len()
        );
        let list = |names: &mut dyn Iterator<Item = String>, n: usize| {
            let mut v: Vec<String> = names.take(limit).collect();
            if n > limit {
                v.push(format!("… and {} more", n - limit));
            }
            v.join(", ")
        };
        if !self.missing.is_empty() {
            s += &format!(
                "\n  missing: {}",
                list(&mut self.missing.iter().cloned(), self.missing.len())
            );
        }
        if !self.unexpected.is_empty() {
            s += &format!(
                "\n  unexpected: {}",
                list(&mut self.unexpected.iter().cloned(), self.unexpected.len())
            );
        }
        if !self.wrong_shape.is_empty() {
            let mut it = self
                .wrong_shape
                .iter()
                .map(|(n, got, want)| format!("{n} is {got:?}, expected {want:?}"));
            s += &format!("\n  wrong shape: {}", list(&mut it, self.wrong_shape.len()));
        }
        s
    }
}

/// Ignored everywhere: BatchNorm's step counter is training state, not a weight.
pub fn is_ignored(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// Compares `found` (name → shape) with `expected`. Optional tensors may be absent, but only all
/// together: half a classifier is reported as missing.
pub fn compare(expected: &[Expected], found: &HashMap<String, Vec<i64>>) -> Mismatch {
    let mut m = Mismatch::default();
    let any_optional_present = expected
        .iter()
        .any(|e| e.optional && found.contains_key(&e.name));
    for e in expected {
        match found.get(&e.name) {
            None if e.optional && !any_optional_present => {}
            None => m.missing.push(e.name.clone()),
            Some(shape) if *shape != e.shape => {
                m.wrong_shape
                    .push((e.name.clone(), shape.clone(), e.shape.clone()))
            }
            Some(_) => {}
        }
    }
    let names: std::collections::HashSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    let mut unexpected: Vec<String> = found
        .keys()
        .filter(|k| !names.contains(k.as_str()) && !is_ignored(k))
        .cloned()
        .collect();
    unexpected.sort_by(|a, b| natural_cmp(a, b));
    m.unexpected = unexpected;
    m
}

/// How well `found` fits `expected`: the share of the file's tensors (ignored ones excepted) that
/// the architecture has, with the right shape, and whether the fit is exact.
pub fn fit(expected: &[Expected], found: &HashMap<String, Vec<i64>>) -> (f64, bool) {
    let m = compare(expected, found);
    let n = found.keys().filter(|k| !is_ignored(k)).count().max(1);
    let good = n - m.unexpected.len().min(n) - m.wrong_shape.len().min(n);
    (good as f64 / n as f64, m.is_empty())
}

/// Orders `layer1.10.x` after `layer1.2.x` (numbers compared as numbers).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<(String, u64)> {
        s.split('.')
            .map(|p| {
                p.parse::<u64>()
                    .map_or((p.to_string(), 0), |n| (String::new(), n))
            })
            .collect()
    };
    split(a).cmp(&split(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(name: &str, shape: &[i64], optional: bool) -> Expected {
        Expected {
            name: name.into(),
            shape: shape.to_vec(),
            optional,
        }
    }

    #[test]
    fn reports_every_category_at_once() {
        let e = vec![
            exp("a.weight", &[2, 3], false),
            exp("b.weight", &[4], false),
            exp("fc.weight", &[1, 4], true),
        ];
        let mut f = HashMap::new();
        f.insert("a.weight".to_string(), vec![3, 2]);
        f.insert("c.weight".to_string(), vec![1]);
        f.insert("a.num_batches_tracked".to_string(), vec![]);
        let m = compare(&e, &f);
        assert_eq!(m.missing, vec!["b.weight"]);
        assert_eq!(m.unexpected, vec!["c.weight"]);
        assert_eq!(
            m.wrong_shape,
            vec![("a.weight".to_string(), vec![3, 2], vec![2, 3])]
        );
        let d = m.describe(5);
        assert!(
            d.contains("1 missing, 1 unexpected, 1 wrongly shaped"),
            "{d}"
        );
    }

    #[test]
    fn optional_group_all_or_nothing() {
        let e = vec![
            exp("x", &[1], false),
            exp("fc.weight", &[1, 1], true),
            exp("fc.bias", &[1], true),
        ];
        let mut f = HashMap::new();
        f.insert("x".to_string(), vec![1]);
        assert!(compare(&e, &f).is_empty());
        f.insert("fc.weight".to_string(), vec![1, 1]);
        assert_eq!(compare(&e, &f).missing, vec!["fc.bias"]);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["layer1.10.a", "layer1.2.a", "layer1.1.b"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["layer1.1.b", "layer1.2.a", "layer1.10.a"]);
    }
}
