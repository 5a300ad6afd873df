"""Train a network on scikit-learn's bundled digits and print the test accuracy.

    python -m vnn.demo                 # NumPy on the CPU
    python -m vnn.demo --device cuda   # CuPy on the first GPU
    python -m vnn.demo --backend torch --device cpu
"""

from __future__ import annotations

import argparse
import sys
import time

import vnn


def load_digits_split(seed: int = 0) -> tuple:  # type: ignore[type-arg]
    """Digits (1797 8×8 images, 10 classes), 75/25 split, standardised with training statistics."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        sys.exit("the demo needs scikit-learn for its bundled data: "
                 "python -m pip install 'vanilla-nn[datasets]'")
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vnn.demo", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--backend", default=None,
                   help="numpy, cupy, torch or array_api_strict (default: from --device)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    X_train, X_test, y_train, y_test = load_digits_split()
    net = vnn.MLP([64, 128, 10], activation="relu", output="softmax", device=args.device,
                  backend=args.backend, dtype=args.dtype, seed=args.seed)
    print(net)
    print(f"digits: {len(X_train)} training and {len(X_test)} test samples, "
          f"Adam(lr={args.lr}), batch {args.batch_size}, {args.epochs} epochs")
    t0 = time.perf_counter()
    history = net.fit(X_train, y_train, optimizer=vnn.Adam(lr=args.lr), epochs=args.epochs,
                      batch_size=args.batch_size, validation_data=(X_test, y_test), progress=True)
    seconds = time.perf_counter() - t0
    accuracy = float((vnn.to_numpy(net.predict(X_test)) == y_test).mean())
    print(f"final training loss {history.loss[-1]:.4f}, test loss {history.val_loss[-1]:.4f}, "
          f"{seconds:.2f}s")
    print(f"test accuracy: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
