import { lang } from '../lib/i18n';

/** 中文 / English; the choice is kept in localStorage (lib/i18n). */
export function LangSwitch() {
  return (
    <span class="lang" role="group" aria-label="Language">
      <button type="button" class={lang.value === 'zh' ? 'seg active' : 'seg'} data-lang="zh" onClick={() => (lang.value = 'zh')}>
        中文
      </button>
      <button type="button" class={lang.value === 'en' ? 'seg active' : 'seg'} data-lang="en" onClick={() => (lang.value = 'en')}>
        English
      </button>
    </span>
  );
}
