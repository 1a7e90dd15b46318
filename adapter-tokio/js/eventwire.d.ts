// eventwire.d.ts: being written (placeholder; overwrite freely)
