//! A bounding volume hierarchy over anything with a bounding box: a mesh's triangles, a
//! frame's objects. Built by median splits on the longest axis of the centroids, with a
//! stable sort, so the same input always gives the same tree and the same hit order.

use super::math::{Aabb, Ray, V3, v3};

/// Primitives per leaf at most.
const LEAF: usize = 4;

/// The tree: nodes in depth-first order (a node's left child follows it) and the primitive
/// indices in leaf order.
#[derive(Debug, Clone, Default)]
pub struct Bvh {
    nodes: Vec<Node>,
    order: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Node {
    bounds: Aabb,
    /// Leaf: first index into `order`. Inner: index of the right child.
    index: u32,
    /// Leaf: number of primitives (above 0). Inner: 0.
    count: u32,
}

impl Bvh {
    /// Builds the tree over primitives with these bounds.
    pub fn build(bounds: &[Aabb]) -> Bvh {
        let mut bvh = Bvh {
            nodes: Vec::with_capacity(bounds.len().div_ceil(LEAF) * 2),
            order: (0..bounds.len() as u32).collect(),
        };
        if !bounds.is_empty() {
            let centers: Vec<V3> = bounds.iter().map(Aabb::center).collect();
            bvh.split(bounds, &centers, 0, bounds.len());
        }
        bvh
    }

    fn split(&mut self, bounds: &[Aabb], centers: &[V3], start: usize, end: usize) -> usize {
        let items = &mut self.order[start..end];
        let mut total = Aabb::EMPTY;
        let mut spread = Aabb::EMPTY;
        for &i in items.iter() {
            total = total.union(bounds[i as usize]);
            spread = spread.with(centers[i as usize]);
        }
        let node = self.nodes.len();
        self.nodes.push(Node {
            bounds: total,
            index: start as u32,
            count: (end - start) as u32,
        });
        let extent = spread.max - spread.min;
        if end - start <= LEAF || extent.max_component() <= 0.0 {
            return node;
        }
        let axis = if extent.x >= extent.y && extent.x >= extent.z {
            0
        } else if extent.y >= extent.z {
            1
        } else {
            2
        };
        items.sort_by(|&a, &b| {
            centers[a as usize]
                .axis(axis)
                .total_cmp(&centers[b as usize].axis(axis))
        });
        let mid = start + (end - start) / 2;
        self.split(bounds, centers, start, mid);
        let right = self.split(bounds, centers, mid, end);
        self.nodes[node].index = right as u32;
        self.nodes[node].count = 0;
        node
    }

    /// Visits the primitives whose leaves the ray meets before `t_max`, nearer subtrees
    /// first. `hit` returns the distance of a hit closer than the one it is given, which then
    /// prunes the rest.
    pub fn traverse(
        &self,
        ray: &Ray,
        mut t_max: f64,
        mut hit: impl FnMut(u32, f64) -> Option<f64>,
    ) {
        if self.nodes.is_empty() {
            return;
        }
        let inv = v3(1.0 / ray.dir.x, 1.0 / ray.dir.y, 1.0 / ray.dir.z);
        let mut stack = [0u32; 64];
        let mut depth = 1;
        while depth > 0 {
            depth -= 1;
            let node = &self.nodes[stack[depth] as usize];
            if node.bounds.hit(ray.origin, inv, t_max).is_none() {
                continue;
            }
            if node.count > 0 {
                let first = node.index as usize;
                for &prim in &self.order[first..first + node.count as usize] {
                    if let Some(t) = hit(prim, t_max) {
                        t_max = t;
                    }
                }
                continue;
            }
            let left = stack[depth] + 1;
            let right = node.index;
            let tl = self.nodes[left as usize].bounds.hit(ray.origin, inv, t_max);
            let tr = self.nodes[right as usize]
                .bounds
                .hit(ray.origin, inv, t_max);
            // Push the farther child first so the nearer one is taken next.
            let (first, second) = match (tl, tr) {
                (Some(a), Some(b)) if b < a => (right, Some(left)),
                (Some(_), Some(_)) => (left, Some(right)),
                (Some(_), None) => (left, None),
                (None, Some(_)) => (right, None),
                (None, None) => continue,
            };
            if let Some(second) = second {
                stack[depth] = second;
                depth += 1;
            }
            stack[depth] = first;
            depth += 1;
        }
    }

    /// The bounds of everything in the tree.
    pub fn bounds(&self) -> Aabb {
        self.nodes.first().map_or(Aabb::EMPTY, |n| n.bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_of_many_boxes() {
        // A row of unit boxes along z; a ray along +z from behind meets box 0 first.
        let boxes: Vec<Aabb> = (0..100)
            .map(|i| Aabb {
                min: v3(0.0, 0.0, f64::from(i) * 2.0),
                max: v3(1.0, 1.0, f64::from(i) * 2.0 + 1.0),
            })
            .collect();
        let bvh = Bvh::build(&boxes);
        let ray = Ray {
            origin: v3(0.5, 0.5, -10.0),
            dir: v3(0.0, 0.0, 1.0),
        };
        let mut nearest = None;
        bvh.traverse(&ray, f64::INFINITY, |i, t_max| {
            let t =
                boxes[i as usize].hit(ray.origin, v3(f64::INFINITY, f64::INFINITY, 1.0), t_max)?;
            nearest = Some(i);
            Some(t)
        });
        assert_eq!(nearest, Some(0));
        let miss = Ray {
            origin: v3(5.0, 0.5, -10.0),
            dir: v3(0.0, 0.0, 1.0),
        };
        let mut any = false;
        bvh.traverse(&miss, f64::INFINITY, |_, _| {
            any = true;
            None
        });
        assert!(!any);
    }
}
