import { signal } from '@preact/signals';

/** Whether the page is shown (document.visibilityState); tiles pause while it is not. */
export const pageVisible = signal(document.visibilityState === 'visible');
document.addEventListener('visibilitychange', () => {
  pageVisible.value = document.visibilityState === 'visible';
});
