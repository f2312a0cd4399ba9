"""Workload 11: reinforcement-learning loop -- one A2C update per step.

JANUS's deep-RL category: the step function rolls out the policy in a
Python environment (a cart-pole simulated with Python floats and numpy,
episodes end and reset inside the rollout), then computes discounted returns
in Python, the actor-critic loss, backward and an Adam step.

Action sampling uses uniform noise handed in as an argument (inverse-CDF
sampling), so every system sees the same random numbers no matter how a
compiler implements RNG, and the environment trajectory can be compared
against eager. Size: policy MLP 4-64-64-(2 logits + value), 32-step
rollout, gamma 0.99. Quick: hidden 8, 4-step rollout.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, fresh_function, params_state, seeded


class CartPole:
    """Classic cart-pole dynamics (Barto et al. 1983) in plain Python."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.episodes = 0
        self.reset()

    def reset(self):
        self.state = [self.rng.uniform(-0.05, 0.05) for _ in range(4)]
        self.episodes += 1
        return np.asarray(self.state, dtype=np.float32)

    def step(self, action: int):
        x, x_dot, theta, theta_dot = self.state
        force = 10.0 if action == 1 else -10.0
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + 0.05 * theta_dot ** 2 * sin) / 1.1
        theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos ** 2 / 1.1))
        x_acc = temp - 0.05 * theta_acc * cos / 1.1
        tau = 0.02
        self.state = [x + tau * x_dot, x_dot + tau * x_acc, theta + tau * theta_dot,
                      theta_dot + tau * theta_acc]
        done = abs(self.state[0]) > 2.4 or abs(self.state[2]) > 12 * 2 * math.pi / 360
        obs = self.reset() if done else np.asarray(self.state, dtype=np.float32)
        return obs, 1.0, done


class ActorCritic(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.pi = nn.Linear(hidden, 2)
        self.v = nn.Linear(hidden, 1)

    def forward(self, obs):
        z = self.body(obs)
        return self.pi(z), self.v(z).squeeze(-1)


class A2CTrain(Workload):
    name = "rl_a2c"
    title = "A2C update with a Python cart-pole rollout"
    kind = "train"

    def __init__(self, quick=False):
        super().__init__(quick)
        self.hidden, self.T = (8, 4) if quick else (64, 32)
        self.gamma = 0.99
        self.size = f"policy 4-{self.hidden}-{self.hidden}-2+1, rollout {self.T}, Adam"
        g = seeded(11)
        self.noise = [(torch.rand(self.T, generator=g),) for _ in range(8)]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = ActorCritic(self.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        env = CartPole(seed=11)
        carry = {"obs": env.reset()}
        T, gamma = self.T, self.gamma

        def a2c_step(noise):
            obs = carry["obs"]
            log_probs, values, entropies, rewards, dones = [], [], [], [], []
            for t in range(T):
                logits, value = model(torch.from_numpy(obs))
                probs = F.softmax(logits, dim=-1)
                action = (probs[0] < noise[t]).long()  # inverse-CDF sample of {0, 1}
                log_probs.append(torch.log(probs[action]))
                entropies.append(-(probs * torch.log(probs)).sum())
                values.append(value)
                obs, reward, done = env.step(int(action.item()))
                rewards.append(reward)
                dones.append(done)
            carry["obs"] = obs
            returns, ret = [], 0.0
            for r, d in zip(reversed(rewards), reversed(dones)):
                ret = r + gamma * ret * (0.0 if d else 1.0)
                returns.append(ret)
            returns = torch.from_numpy(np.asarray(returns[::-1], dtype=np.float32))
            values = torch.stack(values)
            adv = returns - values.detach()
            loss = (-(torch.stack(log_probs) * adv).mean() + 0.5 * F.mse_loss(values, returns)
                    - 0.01 * torch.stack(entropies).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        def state():
            s = params_state(model)
            s["env.state"] = torch.tensor(env.state, dtype=torch.float64)
            s["env.episodes"] = env.episodes
            return s

        return Instance(step=fresh_function(a2c_step),
                        args=lambda i: self.noise[i % len(self.noise)],
                        state=state)
