import { useState } from 'preact/hooks';
import { ApiError, login } from '../lib/api';
import { t } from '../lib/i18n';
import { LangSwitch } from './LangSwitch';

export function Login() {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username.trim(), password);
    } catch (err) {
      // The hub's own words for what is not the usual wrong password (throttling says when).
      setError(
        err instanceof ApiError
          ? err.status === 401
            ? t('login.wrong')
            : err.message
          : t('error.network'),
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form class="login-box" onSubmit={submit} data-form="login">
        <div class="login-head">
          <h1>{t('product')}</h1>
          <LangSwitch />
        </div>
        <h2>{t('login.title')}</h2>
        <label>
          <span>{t('login.username')}</span>
          <input
            name="username"
            autocomplete="username"
            required
            autofocus
            value={username}
            onInput={(e) => setUsername((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          <span>{t('login.password')}</span>
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
          />
        </label>
        {error && (
          <p class="error" role="alert" data-role="login-error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? t('login.busy') : t('login.submit')}
        </button>
      </form>
    </main>
  );
}
