"""The torch half of the ``ppo`` learner: the shared actor-critic network and its PPO update.

Imported only by :mod:`crowdsteer.learners.ppo` when a solve runs, so that the core does
not need torch or TorchRL (``pip install crowdsteer[deep]``). Built on TorchRL: the policy
is a :class:`torchrl.modules.ProbabilisticActor` over a categorical distribution, the critic
a :class:`torchrl.modules.ValueOperator`, advantages come from
:class:`torchrl.objectives.value.GAE` and the update minimises
:class:`torchrl.objectives.ClipPPOLoss`.

Determinism: every random draw of the solve comes from the caller's
``np.random.Generator`` (weights are initialised from a ``torch.Generator`` seeded from it,
minibatches are drawn with it), torch runs with ``use_deterministic_algorithms`` and a fixed
number of threads while a solve runs (:func:`deterministic`), so the same generator state
and warm start give the same network, bit for bit, in any process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import MLP, ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

Array = np.ndarray
MASKED_LOGIT = -1e4  # a forbidden action's logit: probability exp(-1e4) = 0 in float32


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic torch on ``threads`` threads for the duration; the caller's settings
    are restored after."""
    was_threads = torch.get_num_threads()
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):  # nothing here may move the global stream
            yield
    finally:
        torch.use_deterministic_algorithms(was_det)
        torch.set_num_threads(was_threads)


class Inputs:
    """The distinct observations of the batch at hand, which the networks index by id.

    Many agents share an observation (a crowd game has ``T S`` of them for ``N T`` agent
    steps): the MLPs run once per distinct observation and the rows are gathered by
    ``obs_id``, instead of once per agent step.

    Attributes
    ----------
    features
        ``(K, F)`` float32 features of the distinct observations.
    mask
        ``(K, A)`` bool allowed actions at each.
    """

    def __init__(self) -> None:
        self.features = torch.zeros(0)
        self.mask = torch.zeros(0, dtype=torch.bool)

    def set(self, features: Array, mask: Array) -> None:
        self.features = torch.as_tensor(features)
        self.mask = torch.as_tensor(mask)


class Gathered(nn.Module):
    """``MLP(features)[obs_id]``; with ``masked``, forbidden actions get a large negative logit."""

    def __init__(self, mlp: nn.Module, inputs: Inputs, masked: bool) -> None:
        super().__init__()
        self.mlp = mlp
        self.inputs = inputs
        self.masked = masked

    def forward(self, obs_id: torch.Tensor) -> torch.Tensor:
        out = self.mlp(self.inputs.features)
        if self.masked:
            out = out.masked_fill(~self.inputs.mask, MASKED_LOGIT)
        return out[obs_id]


class ActorCritic:
    """A shared-parameter actor-critic: one policy network and one value network for all agents.

    Parameters
    ----------
    features
        ``F``, the length of an observation's feature vector.
    actions
        ``A``, the number of discrete actions.
    hidden
        Widths of the hidden layers of both MLPs (tanh activations).
    seed
        Seeds the weights' initialisation (a private ``torch.Generator``).
    """

    def __init__(self, features: int, actions: int, hidden: list[int], seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        policy = MLP(in_features=features, out_features=actions, num_cells=list(hidden),
                     activation_class=nn.Tanh)
        value = MLP(in_features=features, out_features=1, num_cells=list(hidden),
                    activation_class=nn.Tanh)
        for net, last_gain in ((policy, 0.01), (value, 1.0)):
            layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
            for i, layer in enumerate(layers):
                gain = last_gain if i == len(layers) - 1 else float(np.sqrt(2.0))
                nn.init.orthogonal_(layer.weight, gain=gain, generator=gen)
                nn.init.zeros_(layer.bias)
        self.inputs = Inputs()
        self.logits = Gathered(policy, self.inputs, masked=True)
        self.actor = ProbabilisticActor(
            TensorDictModule(self.logits, in_keys=["obs_id"], out_keys=["logits"]),
            in_keys=["logits"], distribution_class=torch.distributions.Categorical,
            return_log_prob=True)
        self.critic = ValueOperator(Gathered(value, self.inputs, masked=False),
                                    in_keys=["obs_id"])
        self.modules = nn.ModuleList([self.actor, self.critic])

    def n_params(self) -> int:
        return sum(p.numel() for p in self.modules.parameters())

    def get_params(self) -> Array:
        """All weights as one flat float32 array (actor first, then critic)."""
        return nn.utils.parameters_to_vector(self.modules.parameters()).detach().numpy().copy()

    def set_params(self, flat: Array) -> None:
        # a copy: the parameters become views of this vector, and training writes to them
        nn.utils.vector_to_parameters(torch.tensor(np.asarray(flat, dtype=np.float32)),
                                      self.modules.parameters())

    @torch.no_grad()
    def probs(self, features: Array, mask: Array) -> Array:
        """``(K, A)`` float64 action probabilities at ``K`` observations ``(K, F)``."""
        self.inputs.set(features, mask)
        logits = self.logits(torch.arange(features.shape[0]))
        return torch.softmax(logits.double(), dim=-1).numpy()


class PPOUpdate:
    """Clipped PPO on batches of whole episodes (TorchRL's ``ClipPPOLoss`` and ``GAE``)."""

    def __init__(self, net: ActorCritic, learning_rate: float, clip: float, entropy: float,
                 critic_coef: float, gae_lambda: float, epochs: int, minibatches: int) -> None:
        self.net = net
        self.loss = ClipPPOLoss(net.actor, net.critic, clip_epsilon=clip,
                                entropy_bonus=entropy > 0, entropy_coeff=entropy,
                                critic_coeff=critic_coef, loss_critic_type="l2",
                                normalize_advantage=False)
        self.loss.set_keys(sample_log_prob="sample_log_prob")
        self.gae = GAE(gamma=1.0, lmbda=gae_lambda, value_network=net.critic,
                       vectorized=False)
        self.optim = torch.optim.Adam(net.modules.parameters(), lr=learning_rate)
        self.epochs = epochs
        self.minibatches = minibatches

    def step(self, batch: TensorDict, features: Array, mask: Array, valid: Array,
             learning_rate: float, rng: np.random.Generator) -> float:
        """``epochs`` passes of PPO over ``batch`` (``[M, L]``: ``M`` episodes of ``L`` steps,
        observations as ids into ``features`` ``(K, F)`` with allowed actions ``mask``
        ``(K, A)``); only the ``valid`` ``(M, L)`` entries are trained on. Returns the last
        loss."""
        self.net.inputs.set(features, mask)
        for group in self.optim.param_groups:
            group["lr"] = learning_rate
        with torch.no_grad():
            self.gae(batch)
        flat = batch[torch.as_tensor(valid)]
        n = flat.shape[0]
        total = 0.0
        for _ in range(self.epochs):
            order = torch.as_tensor(rng.permutation(n))
            for part in torch.tensor_split(order, self.minibatches):
                out = self.loss(flat[part])
                loss = out["loss_objective"] + out["loss_critic"]
                if "loss_entropy" in out.keys():
                    loss = loss + out["loss_entropy"]
                self.optim.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.modules.parameters(), 1.0)
                self.optim.step()
                total = float(loss.detach())
        return total


def make_batch(obs_id: Array, action: Array, log_prob: Array, reward: Array,
               next_id: Array, terminated: Array, done: Array) -> TensorDict:
    """A TensorDict ``[M, L]`` of ``M`` episodes (agents) of ``L`` steps, in TorchRL's layout."""
    M, L = action.shape
    return TensorDict({
        "obs_id": torch.as_tensor(obs_id),
        "action": torch.as_tensor(action),
        "sample_log_prob": torch.as_tensor(log_prob, dtype=torch.float32),
        "next": TensorDict({
            "obs_id": torch.as_tensor(next_id),
            "reward": torch.as_tensor(reward, dtype=torch.float32)[..., None],
            "terminated": torch.as_tensor(terminated)[..., None],
            "done": torch.as_tensor(done)[..., None],
        }, batch_size=[M, L]),
    }, batch_size=[M, L])
