import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.errors import UnknownTaskError
from mesalab.tasks import COLOURS, OBJECT_TYPES, get_task, level_grid, list_tasks
from mesalab.tasks.families import make_distribution
from mesalab.tasks.grid import COLOUR_CHANNEL, TYPE_CHANNEL, WALL_CHANNEL
from mesalab.tasks.mazegen import generate_walls
from mesalab.tasks.objectives import corner_region
from reference import connected


def _objects(grid):
    """List of (row, col, type, colour) of a grid."""
    out = []
    for r, c in zip(*np.nonzero(grid[..., 1 : 1 + len(OBJECT_TYPES)].any(-1))):
        t = [n for n in OBJECT_TYPES if grid[r, c, TYPE_CHANNEL[n]]][0]
        k = [n for n in COLOURS if grid[r, c, COLOUR_CHANNEL[n]]][0]
        out.append((r, c, t, k))
    return out


def test_registry_lists_three_families_and_rejects_unknown():
    names = [t.name for t in list_tasks()]
    assert {"red-door", "corner-goal", "maze"} <= set(names)
    with pytest.raises(UnknownTaskError, match="choose one of"):
        get_task("blue-door")


@pytest.mark.parametrize("density", [0.0, 0.5, 1.0])
def test_mazes_are_connected_with_border(density):
    walls = jax.vmap(lambda k: generate_walls(k, 9, 11, jnp.float32(density)))(jax.random.split(jax.random.key(0), 64))
    walls = np.asarray(walls)
    for w in walls:
        assert w[0].all() and w[-1].all() and w[:, 0].all() and w[:, -1].all()
        assert connected(~w)
    if density == 1.0:  # perfect maze: a tree over the 4x5 cells => free cells = 2*cells - 1
        assert (~walls[0]).sum() == 2 * 4 * 5 - 1
    if density == 0.0:
        assert (~walls[0]).sum() == 7 * 9


def test_red_door_train_and_test_distributions(red_door):
    train = red_door.sample_params_checked(jax.random.key(1), "train", 200)
    test = red_door.sample_params_checked(jax.random.key(2), "test", 200)
    for grid in np.asarray(train.grid):
        objs = _objects(grid)
        doors = [o for o in objs if o[2] == "door"]
        assert len(doors) == 1 and doors[0][3] == "red"
        assert all(o[3] != "red" for o in objs if o[2] != "door")
        assert len(objs) == 3
    for grid in np.asarray(test.grid):
        objs = _objects(grid)
        doors = [o for o in objs if o[2] == "door"]
        assert len(doors) == 1 and doors[0][3] == "blue"
        assert any(o[3] == "red" and o[2] != "door" for o in objs)


def test_alpha_is_a_vmappable_dial(red_door):
    """Fraction of disambiguating (blue-door) levels follows alpha, vmapped over alpha values."""
    alphas = jnp.array([0.0, 0.25, 1.0], jnp.float32)

    def blue_door_fraction(alpha):
        dist = red_door.train._replace(alpha=alpha)
        levels = red_door.generate_levels(jax.random.key(3), dist, 400)
        door = levels.obj_type[:, 0] == OBJECT_TYPES.index("door")
        blue = levels.obj_colour[:, 0] == COLOURS.index("blue")
        return jnp.mean((door & blue).astype(jnp.float32))

    fr = np.asarray(jax.vmap(blue_door_fraction)(alphas))
    assert fr[0] == 0.0 and fr[2] == 1.0
    assert abs(fr[1] - 0.25) < 0.07


def test_corner_goal_regions():
    task = get_task("corner-goal")
    region = np.asarray(corner_region(9, 9, "top-right", 3))
    assert region.sum() == 9 and region[1, 7] and region[3, 5] and not region[4, 5]
    train = task.sample_params_checked(jax.random.key(0), "train", 200)
    test = task.sample_params_checked(jax.random.key(1), "test", 200)
    goal_ch = TYPE_CHANNEL["goal"]
    for grid, start in zip(np.asarray(train.grid), np.asarray(train.start)):
        assert (grid[..., goal_ch] <= region).all() and grid[..., goal_ch].any()
        assert not region[tuple(start)]
    for grid in np.asarray(test.grid):
        assert not (grid[..., goal_ch] & region).any()


def test_start_is_free_and_not_on_object():
    for task in list_tasks():
        p = task.sample_params_checked(jax.random.key(5), "train", 100)
        for grid, start in zip(np.asarray(p.grid), np.asarray(p.start)):
            assert not grid[start[0], start[1]].any()


def test_level_grid_channels_one_hot():
    task = get_task("red-door")
    levels = task.generate_levels(jax.random.key(0), task.train, 8)
    grids = np.asarray(jax.vmap(level_grid)(levels))
    types = grids[..., 1 : 1 + len(OBJECT_TYPES)].sum(-1)
    colours = grids[..., 1 + len(OBJECT_TYPES) :].sum(-1)
    assert (types <= 1).all() and (types == colours).all()
    assert not (grids[..., WALL_CHANNEL] & (types > 0)).any()


def test_generation_is_deterministic(red_door):
    a = red_door.sample_params_checked(jax.random.key(9), "test", 32)
    b = red_door.sample_params_checked(jax.random.key(9), "test", 32)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_unsolvable_distribution_is_a_clear_error(red_door):
    from mesalab.errors import ConfigError

    blocked = make_distribution(wall_density=1.0, n_distractors=2, alpha=1.0)
    # perfect mazes with three terminal objects often cut the door off: the pool check must say so
    with pytest.raises(ConfigError, match="solvable"):
        red_door.sample_params_checked(jax.random.key(0), blocked, 2000)
